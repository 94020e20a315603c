/**
 * Text from the registry (logs a container wrote, reasons, task and site names, error messages)
 * is shown to the researcher on a terminal. Control characters in it could move the cursor,
 * clear the screen, rewrite the window title or hide lines, so every such character is shown as
 * a visible escape (`\x1b`, `\u202e`) instead. Nothing else is changed.
 */

// C0 controls, DEL, C1 controls (U+0080–U+009F: a terminal may take U+009B as CSI), and the
// Unicode bidirectional controls that reorder what a line appears to say.
const CONTROLS = '\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
const UNSAFE_IN_FIELD = new RegExp(`[${CONTROLS}]`, 'g');
// Multi-line text keeps its line breaks and tabs.
const UNSAFE_IN_TEXT = new RegExp(`[${CONTROLS.replace('\\x00-\\x1f', '\\x00-\\x08\\x0b-\\x1f')}]`, 'g');
// JSON.stringify already escapes U+0000–U+001F; these it leaves raw.
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** A one-line field (a name, a reason, a message): every control character is escaped, newlines too. */
export function visible(text: string): string {
  return text.replace(UNSAFE_IN_FIELD, escapeChar);
}

/** Multi-line text (a log): newlines and tabs are kept, every other control character escaped. */
export function visibleText(text: string): string {
  return text.replace(UNSAFE_IN_TEXT, escapeChar);
}

/** JSON for stdout: the same document, with the characters a terminal would act on as \u escapes. */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    UNSAFE_IN_JSON,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
