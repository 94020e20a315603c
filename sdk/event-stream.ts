import type { Readable } from 'node:stream';

export interface ServerSentEvent {
  event: string;
  data: string;
}

/**
 * Parses a text/event-stream body (the subset the registry sends: `event:` and `data:` fields,
 * `:` comments as keep-alives, blank lines between events).
 */
export async function* readServerSentEvents(body: Readable): AsyncGenerator<ServerSentEvent> {
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  body.setEncoding('utf8');
  for await (const chunk of body as AsyncIterable<string>) {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(buffer[newline] === '\r' ? newline + 2 : newline + 1);
      if (line === '') {
        if (data.length > 0) yield { event, data: data.join('\n') };
        event = 'message';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  }
}
