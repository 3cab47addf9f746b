/** The smallest string greater than every string starting with `prefix` (for range scans). */
export function prefixEnd(prefix) {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
}
