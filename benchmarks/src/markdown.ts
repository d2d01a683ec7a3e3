/** Formats a markdown table: a header row, a separator, then one line per row. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Formats a rate in [0, 1] as a percentage with `decimals` decimals. */
export function percent(rate: number, decimals = 2): string {
  return `${(rate * 100).toFixed(decimals)}%`;
}
