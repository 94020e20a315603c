/**
 * The signed-in token lives in sessionStorage only: gone when the tab closes, never in a URL
 * (hash routes carry no secret) and never in a cookie, so no other site can make the browser send
 * it (CSRF is impossible by design: every call carries it in an Authorization header).
 */
const KEY = 'pht.token';
/** Who the token belongs to, kept beside it so a reload can draw at once (checked again by /me). */
const WHO = 'pht.who';

export interface Identity {
  name: string;
  role: 'researcher' | 'admin';
}

export function savedToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function savedIdentity(): Identity | null {
  try {
    const raw = JSON.parse(sessionStorage.getItem(WHO) ?? 'null') as Partial<Identity> | null;
    if (raw && typeof raw.name === 'string' && (raw.role === 'researcher' || raw.role === 'admin'))
      return { name: raw.name, role: raw.role };
  } catch {
    /* absent or not ours: ask the registry */
  }
  return null;
}

export function saveSession(token: string, who: Identity): void {
  sessionStorage.setItem(KEY, token);
  sessionStorage.setItem(WHO, JSON.stringify(who));
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
}
