// JPEG to interleaved 8-bit RGB through libjpeg-turbo's TurboJPEG API, for
// @facegate/vision's fast path (src/fast-jpeg.ts). The library is opened at run
// time with dlopen from a path the caller gives, so nothing here needs the
// library's headers: the few functions and constants of the TurboJPEG 2 API that
// are used are declared below. Decoding uses libjpeg's defaults (accurate
// integer IDCT, smooth chroma upsampling), which give the same bytes as sharp.
#include <dlfcn.h>
#include <node_api.h>
#include <pthread.h>
#include <stdio.h>

typedef void *tj_handle;

// Values from the TurboJPEG 2 API.
enum { TJ_PIXEL_RGB = 0, TJ_FLAG_STOP_ON_WARNING = 8192 };

static struct {
  pthread_mutex_t lock;
  void *library;
  tj_handle (*init_decompress)(void);
  int (*decompress_header3)(tj_handle, const unsigned char *, unsigned long, int *, int *, int *,
                            int *);
  int (*decompress2)(tj_handle, const unsigned char *, unsigned long, unsigned char *, int, int,
                     int, int, int);
  char *(*error_text)(tj_handle);
  int (*destroy)(tj_handle);
} turbo = {.lock = PTHREAD_MUTEX_INITIALIZER};

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

// open(path): loads the library once per process; later calls are no-ops.
static napi_value open_library(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  size_t length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &length) != napi_ok ||
      length >= sizeof path - 1) {
    return throw_error(env, "open(path) needs the path of libturbojpeg as a string");
  }

  char message[4200];
  message[0] = '\0';
  pthread_mutex_lock(&turbo.lock);
  if (turbo.library == NULL) {
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
      snprintf(message, sizeof message, "cannot open %s: %s", path, dlerror());
    } else {
      *(void **)&turbo.init_decompress = dlsym(library, "tjInitDecompress");
      *(void **)&turbo.decompress_header3 = dlsym(library, "tjDecompressHeader3");
      *(void **)&turbo.decompress2 = dlsym(library, "tjDecompress2");
      *(void **)&turbo.error_text = dlsym(library, "tjGetErrorStr2");
      *(void **)&turbo.destroy = dlsym(library, "tjDestroy");
      if (turbo.init_decompress && turbo.decompress_header3 && turbo.decompress2 &&
          turbo.error_text && turbo.destroy) {
        turbo.library = library;
      } else {
        snprintf(message, sizeof message, "%s lacks the TurboJPEG 2 decompression functions",
                 path);
        dlclose(library);
      }
    }
  }
  pthread_mutex_unlock(&turbo.lock);
  if (message[0] != '\0') return throw_error(env, message);
  return NULL;
}

// decode(bytes, maxPixels): { width, height, data } with data a Buffer of
// width * height * 3 bytes. Throws on any error or warning (a truncated file
// included), and when the header's width * height exceeds maxPixels.
static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *bytes = NULL;
  size_t size = 0;
  double max_pixels = 0;
  bool is_typed_array = false;
  if (turbo.library == NULL) return throw_error(env, "open() has not loaded libturbojpeg");
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_is_typedarray(env, argv[0], &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, argv[0], NULL, &size, &bytes, NULL, NULL) != napi_ok ||
      napi_get_value_double(env, argv[1], &max_pixels) != napi_ok) {
    return throw_error(env, "decode(bytes, maxPixels) needs a Uint8Array and a number");
  }

  tj_handle handle = turbo.init_decompress();
  if (handle == NULL) return throw_error(env, "tjInitDecompress failed");
  char message[512];
  message[0] = '\0';
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  napi_value buffer = NULL;
  void *pixels = NULL;
  if (turbo.decompress_header3(handle, bytes, size, &width, &height, &subsampling, &colorspace) !=
      0) {
    snprintf(message, sizeof message, "%s", turbo.error_text(handle));
  } else if (width <= 0 || height <= 0 || (double)width * height > max_pixels) {
    snprintf(message, sizeof message, "%d x %d pixels is outside the accepted range", width,
             height);
  } else if (napi_create_buffer(env, (size_t)width * height * 3, &pixels, &buffer) != napi_ok) {
    snprintf(message, sizeof message, "cannot allocate %d x %d x 3 bytes", width, height);
  } else if (turbo.decompress2(handle, bytes, size, pixels, width, 0, height, TJ_PIXEL_RGB,
                               TJ_FLAG_STOP_ON_WARNING) != 0) {
    snprintf(message, sizeof message, "%s", turbo.error_text(handle));
  }
  turbo.destroy(handle);
  if (message[0] != '\0') return throw_error(env, message);

  napi_value result, width_value, height_value;
  napi_create_object(env, &result);
  napi_create_int32(env, width, &width_value);
  napi_create_int32(env, height, &height_value);
  napi_set_named_property(env, result, "width", width_value);
  napi_set_named_property(env, result, "height", height_value);
  napi_set_named_property(env, result, "data", buffer);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"open", NULL, open_library, NULL, NULL, NULL, napi_default, NULL},
      {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
