{
  "targets": [
    {
      "target_name": "jpeg_decoder",
      "sources": ["decoder.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}
