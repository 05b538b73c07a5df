import { isUtf8 } from 'node:buffer';

// Text files arrive in whatever encoding the user's editor or spreadsheet chose. Parsers given the
// wrong bytes do not fail: they read U+FFFD or NUL as data, so two different labels become one
// class, or a UTF-16 file becomes one long garbled string. We decide what the bytes are first.

export interface TextProblem {
  line: number;
  col: number;
  /** What is wrong and how to fix it, without the file name (callers prefix it). */
  message: string;
}

const SAVE_AS_UTF8 = 'save the file as UTF-8';

/**
 * The file's text as UTF-8 bytes: a UTF-8 byte-order mark is dropped and UTF-16 with a byte-order
 * mark (what spreadsheets write as "Unicode text") is converted. Anything else that is not UTF-8
 * text (UTF-32, NUL bytes, invalid sequences) is a problem at a line and column.
 */
export function decodeTextFile(bytes: Buffer): { text: Buffer } | { problem: TextProblem } {
  const b = bytes;
  if ((b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0) || (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff)) {
    return { problem: { line: 1, col: 1, message: `the file is UTF-32 text (it starts with a UTF-32 byte-order mark); ${SAVE_AS_UTF8}` } };
  }
  const utf16 = b[0] === 0xff && b[1] === 0xfe ? 'utf-16le' : b[0] === 0xfe && b[1] === 0xff ? 'utf-16be' : undefined;
  if (utf16) {
    let text: string;
    try {
      text = new TextDecoder(utf16, { fatal: true, ignoreBOM: false }).decode(b);
    } catch {
      return {
        problem: { line: 1, col: 1, message: `the file starts with a UTF-16 byte-order mark but is not valid UTF-16 text; ${SAVE_AS_UTF8}` },
      };
    }
    return checkUtf8(Buffer.from(text, 'utf8'));
  }
  return checkUtf8(b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? b.subarray(3) : b);
}

function checkUtf8(b: Buffer): { text: Buffer } | { problem: TextProblem } {
  const nul = b.indexOf(0);
  if (nul >= 0) {
    return {
      problem: {
        ...positionOf(b, nul),
        message:
          'found a NUL byte: this is a binary file, or UTF-16 text without a byte-order mark, not UTF-8 text; ' +
          `check the path, or ${SAVE_AS_UTF8}`,
      },
    };
  }
  if (isUtf8(b)) return { text: b };
  const at = Math.max(0, firstInvalidUtf8(b));
  return {
    problem: {
      ...positionOf(b, at),
      message:
        `byte 0x${b[at].toString(16).padStart(2, '0')} is not valid UTF-8 (a Latin-1 or Windows-1252 file?); ` +
        `${SAVE_AS_UTF8}, e.g. with iconv -f latin1 -t utf-8`,
    },
  };
}

/** 1-based line and column (in bytes) of a byte offset. */
export function positionOf(b: Uint8Array, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = b.indexOf(0x0a); i >= 0 && i < offset; i = b.indexOf(0x0a, i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

/** Offset of the first byte that does not start a well-formed UTF-8 sequence; -1 when there is none. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    const need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (need === 0 || i + need >= b.length) return i;
    for (let k = 1; k <= need; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    const c1 = b[i + 1];
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f) || (c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f)) return i;
    i += need + 1;
  }
  return -1;
}

/** A value quoted for a message and cut short, so one enormous cell or key cannot swamp it. */
export function quoteShort(text: string, max = 40): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

/** A word for a POSIX shell: as it is when nothing in it is special, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
