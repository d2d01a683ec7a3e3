/** One CSV record with the 1-based line on which it starts. */
export interface CsvRecord {
  line: number;
  fields: string[];
}

/**
 * Incremental RFC 4180 parser: comma-separated fields, double-quoted fields that may hold
 * commas, line breaks and doubled quotes, CRLF or LF record ends. Text arrives in chunks
 * of any size, so a large manifest is never held in memory whole.
 */
export class CsvParser {
  #field = '';
  #fields: string[] = [];
  #quoted = false;
  /** The previous character closed a quoted section; a second quote means a literal quote. */
  #quoteClosed = false;
  #line = 1;
  #recordLine = 1;
  #recordStarted = false;

  /** Parses the chunk and returns the records it completes. */
  push(chunk: string): CsvRecord[] {
    const records: CsvRecord[] = [];
    for (const char of chunk) {
      if (this.#quoted) {
        this.#consumeQuoted(char);
        continue;
      }
      if (this.#quoteClosed && char === '"') {
        this.#field += '"';
        this.#quoted = true;
        this.#quoteClosed = false;
        continue;
      }
      this.#quoteClosed = false;
      if (char === '"' && this.#field === '') {
        this.#quoted = true;
        this.#recordStarted = true;
      } else if (char === ',') {
        this.#fields.push(this.#field);
        this.#field = '';
        this.#recordStarted = true;
      } else if (char === '\n') {
        const record = this.#endRecord();
        if (record) records.push(record);
        this.#line += 1;
        this.#recordLine = this.#line;
      } else if (char !== '\r') {
        this.#field += char;
        this.#recordStarted = true;
      }
    }
    return records;
  }

  /** Returns the last record when the text does not end with a line break. */
  end(): CsvRecord[] {
    if (this.#quoted) {
      throw new Error(`the quoted field that starts on line ${this.#recordLine} is not closed`);
    }
    const record = this.#endRecord();
    return record ? [record] : [];
  }

  #consumeQuoted(char: string): void {
    if (char === '"') {
      this.#quoted = false;
      this.#quoteClosed = true;
      return;
    }
    if (char === '\n') this.#line += 1;
    this.#field += char;
  }

  #endRecord(): CsvRecord | undefined {
    if (!this.#recordStarted && this.#field === '') return undefined; // blank line
    this.#fields.push(this.#field);
    const record = { line: this.#recordLine, fields: this.#fields };
    this.#fields = [];
    this.#field = '';
    this.#recordStarted = false;
    return record;
  }
}
