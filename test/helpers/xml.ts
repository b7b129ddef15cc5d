/** A strict XML 1.0 well-formedness checker and tree for the report tests (no dependency): throws on any error. */
export interface El { name: string; attrs: Record<string, string>; children: (El | string)[] }

const LEGAL = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const NAME = /^[A-Za-z_:][-A-Za-z0-9_.:]*/;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** A strict parser for the XML 1.0 subset the reporters write (no DTD beyond `<!DOCTYPE html>`, no PIs but the declaration); throws on any well-formedness error. */
export function parseXml(src: string): El {
  if (!LEGAL.test(src)) throw new Error('The document contains a character that XML 1.0 forbids.');
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at offset ${i}: ${JSON.stringify(src.slice(i, i + 40))}`);
  };
  const decode = (s: string): string =>
    s.replace(/&([^;]*);?/g, (m, ref: string) => {
      if (!m.endsWith(';')) fail(`Bare '&' in ${JSON.stringify(s)}`);
      let c: string | undefined;
      if (/^#[0-9]+$/.test(ref)) c = String.fromCodePoint(Number(ref.slice(1)));
      else if (/^#x[0-9A-Fa-f]+$/.test(ref)) c = String.fromCodePoint(parseInt(ref.slice(2), 16));
      else c = ENTITIES[ref];
      if (c === undefined || !LEGAL.test(c)) fail(`Unknown or illegal reference &${ref};`);
      return c as string;
    });
  const skipMisc = () => {
    for (;;) {
      const ws = /^\s*/.exec(src.slice(i))![0];
      i += ws.length;
      if (src.startsWith('<!--', i)) {
        const end = src.indexOf('-->', i + 4);
        if (end < 0 || src.slice(i + 4, end).includes('--')) fail('Bad comment');
        i = end + 3;
      } else return;
    }
  };
  const element = (): El => {
    if (src[i] !== '<') fail('Expected an element');
    i++;
    const name = NAME.exec(src.slice(i))?.[0] ?? fail('Expected an element name');
    i += name.length;
    const el: El = { name, attrs: {}, children: [] };
    for (;;) {
      const ws = /^\s*/.exec(src.slice(i))![0];
      i += ws.length;
      if (src.startsWith('/>', i)) { i += 2; return el; }
      if (src[i] === '>') { i++; break; }
      if (!ws) fail('Expected whitespace before an attribute');
      const an = NAME.exec(src.slice(i))?.[0] ?? fail('Expected an attribute name');
      i += an.length;
      const m = /^\s*=\s*("[^<"]*"|'[^<']*')/.exec(src.slice(i)) ?? fail(`Bad value for attribute ${an}`);
      if (an in el.attrs) fail(`Duplicate attribute ${an}`);
      el.attrs[an] = decode(m[1].slice(1, -1).replace(/[\t\n\r]/g, ' '));
      i += m[0].length;
    }
    for (;;) {
      if (i >= src.length) fail(`Unclosed <${name}>`);
      if (src.startsWith('</', i)) {
        i += 2;
        if (!src.startsWith(name, i)) fail(`Mismatched end tag for <${name}>`);
        i += name.length;
        const m = /^\s*>/.exec(src.slice(i)) ?? fail('Bad end tag');
        i += m[0].length;
        return el;
      }
      if (src.startsWith('<!--', i)) { skipMisc(); continue; }
      if (src.startsWith('<![CDATA[', i)) {
        const end = src.indexOf(']]>', i);
        if (end < 0) fail('Unclosed CDATA');
        el.children.push(src.slice(i + 9, end));
        i = end + 3;
        continue;
      }
      if (src[i] === '<') { el.children.push(element()); continue; }
      const end = src.indexOf('<', i) < 0 ? src.length : src.indexOf('<', i);
      const raw = src.slice(i, end);
      if (raw.includes(']]>')) fail("']]>' in text");
      el.children.push(decode(raw));
      i = end;
    }
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('Bad XML declaration');
    i = end + 2;
  }
  skipMisc();
  if (/^<!DOCTYPE html>/i.test(src.slice(i))) { i += '<!DOCTYPE html>'.length; skipMisc(); }
  const root = element();
  skipMisc();
  if (i !== src.length) fail('Content after the root element');
  return root;
}

export const all = (el: El, name: string): El[] => el.children.flatMap((c) => (typeof c === 'string' ? [] : [...(c.name === name ? [c] : []), ...all(c, name)]));
export const textOf = (el: El): string => el.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('');
