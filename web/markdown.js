// Safe markdown: model output becomes DOM nodes built with createElement and
// text nodes only. Nothing is ever parsed as HTML (no innerHTML), so text
// like "<script>" or "<img onerror=...>" is shown as the characters it is.
// Links are kept only for http:, https: and mailto: targets.
//
// Supported: paragraphs (line breaks kept), # headings, ``` fenced code (an
// unclosed fence, as while streaming, runs to the end), > quotes, - * + and
// 1. lists, --- rules, `code`, **bold**, *italic* / _italic_, [text](url) and
// bare http(s) URLs.

const SAFE_URL = /^(https?:\/\/|mailto:)[^\s]*$/i;

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

// Inline spans: returns an array of nodes.
export function renderInline(text) {
  const out = [];
  let buf = '';
  const flush = () => { if (buf) { out.push(document.createTextNode(buf)); buf = ''; } };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length && '\\`*_[]()#+-.!>'.includes(text[i + 1])) {
      buf += text[i + 1]; i += 2; continue;
    }
    if (c === '`') {
      let n = 1;
      while (text[i + n] === '`') n++;
      const fence = '`'.repeat(n);
      const end = text.indexOf(fence, i + n);
      if (end > i + n - 1 && end !== -1) {
        flush();
        const code = el('code');
        code.textContent = text.slice(i + n, end);
        out.push(code);
        i = end + n; continue;
      }
      buf += fence; i += n; continue;
    }
    if ((c === '*' || c === '_') && text[i + 1] === c) {
      const end = text.indexOf(c + c, i + 2);
      if (end > i + 2) {
        flush();
        const b = el('strong');
        b.append(...renderInline(text.slice(i + 2, end)));
        out.push(b);
        i = end + 2; continue;
      }
    }
    if ((c === '*' || c === '_') && text[i + 1] && text[i + 1] !== ' ' && text[i + 1] !== c) {
      // _ inside words (snake_case) is not emphasis
      const prev = i > 0 ? text[i - 1] : ' ';
      if (c === '*' || !/\w/.test(prev)) {
        const end = text.indexOf(c, i + 1);
        if (end > i + 1 && text[end - 1] !== ' ' && (c === '*' || !/\w/.test(text[end + 1] || ' '))) {
          flush();
          const em = el('em');
          em.append(...renderInline(text.slice(i + 1, end)));
          out.push(em);
          i = end + 1; continue;
        }
      }
    }
    if (c === '[') {
      const close = text.indexOf('](', i + 1);
      const end = close === -1 ? -1 : text.indexOf(')', close + 2);
      if (close !== -1 && end !== -1) {
        const label = text.slice(i + 1, close), url = text.slice(close + 2, end).trim();
        if (SAFE_URL.test(url) && !label.includes('\n')) {
          flush();
          out.push(link(url, label));
          i = end + 1; continue;
        }
      }
    }
    if (c === 'h' && (text.startsWith('http://', i) || text.startsWith('https://', i)) && !/\w/.test(text[i - 1] || ' ')) {
      const m = /^https?:\/\/[^\s<>"')\]]+/.exec(text.slice(i));
      if (m) {
        let url = m[0].replace(/[.,;:!?]+$/, '');
        flush();
        out.push(link(url, url));
        i += url.length; continue;
      }
    }
    buf += c; i++;
  }
  flush();
  return out;
}

function link(url, label) {
  const a = el('a');
  a.href = url;               // only http(s)/mailto reach here
  a.rel = 'noopener noreferrer nofollow';
  a.target = '_blank';
  a.append(...renderInline(label));
  return a;
}

const FENCE = /^\s{0,3}(```+|~~~+)\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const BULLET = /^\s{0,3}([-*+])\s+(.*)$/;
const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;

// Render markdown text into a DocumentFragment.
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      const fence = m[1], lang = m[2];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++; // the closing fence (or past the end while streaming)
      const pre = el('pre');
      if (lang) {
        const tag = el('span', 'lang');
        tag.textContent = lang;
        pre.append(tag);
      }
      const code = el('code');
      if (lang) code.className = 'language-' + lang.replace(/[^\w-]/g, '');
      code.textContent = body.join('\n');
      pre.append(code);
      frag.append(pre);
      continue;
    }
    if (!line.trim()) { i++; continue; }
    if ((m = HEADING.exec(line))) {
      const h = el('h' + m[1].length);
      h.append(...renderInline(m[2]));
      frag.append(h);
      i++; continue;
    }
    if (RULE.test(line)) { frag.append(el('hr')); i++; continue; }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) { body.push(m[1]); i++; }
      const q = el('blockquote');
      q.append(renderMarkdown(body.join('\n')));
      frag.append(q);
      continue;
    }
    if (BULLET.test(line) || ORDERED.test(line)) {
      const ordered = !BULLET.test(line);
      const re = ordered ? ORDERED : BULLET;
      const list = el(ordered ? 'ol' : 'ul');
      if (ordered) {
        const start = parseInt(ORDERED.exec(line)[1], 10);
        if (start !== 1) list.start = start;
      }
      let item = null;
      while (i < lines.length) {
        const l = lines[i];
        if ((m = re.exec(l))) {
          item = el('li');
          item.append(...renderInline(m[2]));
          list.append(item);
          i++;
        } else if (item && l.trim() && /^\s+/.test(l) && !FENCE.test(l)) {
          item.append(document.createTextNode('\n'), ...renderInline(l.trim()));
          i++;
        } else break;
      }
      frag.append(list);
      continue;
    }
    // a paragraph: lines until a blank line or another block starts
    const para = [];
    while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
           !QUOTE.test(lines[i]) && !(para.length && (BULLET.test(lines[i]) || ORDERED.test(lines[i])))) {
      para.push(lines[i]);
      i++;
    }
    const p = el('p');
    p.append(...renderInline(para.join('\n')));
    frag.append(p);
  }
  return frag;
}
