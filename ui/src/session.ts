/**
 * The signed-in token lives in sessionStorage only: gone when the tab closes, never in a URL
 * (hash routes carry no secret) and never in a cookie, so no other site can make the browser send
 * it (CSRF is impossible by design: every call carries it in an Authorization header).
 */
const KEY = 'pht.token';

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

export function saveToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
