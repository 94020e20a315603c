/** Plain-text formatting of numbers, sizes, durations and times (rendered as text, never HTML). */

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatTime(iso: string | null): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "3 min ago", for last-seen times. */
export function formatAgo(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en');
}

/** sha256:0123456789ab… — the digest's algorithm and first 12 hex digits. */
export function shortDigest(digest: string | null): string {
  if (!digest) return '—';
  const m = /sha256:([a-f0-9]{12})[a-f0-9]*$/.exec(digest);
  return m ? `sha256:${m[1]}…` : digest;
}

/**
 * Whether a result file is ciphertext sealed for its readers (by name: the client seals results
 * into envelope files). The dashboard never renders a file's content, but says what it is.
 */
export function isSealedFile(name: string): boolean {
  return /\.(sealed|pht-sealed|age|enc)$/i.test(name);
}

/**
 * Whether text is a sealed envelope (shared/crypto: magic "PHTE"), raw or base64: such text is
 * ciphertext for someone else's key, so it is described, never shown.
 */
export function isSealedText(text: string): boolean {
  return text.startsWith('PHTE') || text.startsWith('UEhURQ');
}
