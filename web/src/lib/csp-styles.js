// SPDX-License-Identifier: Apache-2.0
// xterm.js under the console's Content-Security-Policy (style-src 'self', nothing inline). It
// draws with styles it makes as it goes: <style> elements (its theme, its sizes, its scrollbar)
// and style attributes set with setAttribute (a cell's true colour). The policy refuses both. So,
// before the first terminal is made, style elements become elements whose text goes to a
// constructed style sheet adopted by the document, and a style attribute set through setAttribute
// goes through the element's CSSOM (element.style) instead: script may make both, and the policy
// allows script. Nothing here widens what a page of another origin could do.

let installed = false;

/** A stand-in for a <style> element: its text is a constructed sheet while it is in use. */
function styleStandIn(doc, realCreate, Sheet) {
  const el = realCreate.call(doc, 'obx-style');
  el.hidden = true;
  const sheet = new Sheet();
  let text = '';
  let adopted = false;
  const adopt = () => {
    if (!adopted) {
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
      adopted = true;
    }
  };
  Object.defineProperty(el, 'textContent', {
    get: () => text,
    set: (v) => {
      text = String(v ?? '');
      sheet.replaceSync(text);
      adopt();
    },
  });
  Object.defineProperty(el, 'sheet', { get: () => (adopt(), sheet) });
  const remove = el.remove.bind(el);
  el.remove = () => {
    if (adopted) doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
    adopted = false;
    remove();
  };
  return el;
}

/** Installs the stand-ins once (doc and ElementProto and Sheet are the window's by default). */
export function installCspStyles(doc = document, ElementProto = Element.prototype, Sheet = CSSStyleSheet) {
  if (installed) return;
  installed = true;
  const realCreate = doc.createElement;
  doc.createElement = function createElement(tag, options) {
    if (this === doc && String(tag).toLowerCase() === 'style') return styleStandIn(doc, realCreate, Sheet);
    return realCreate.call(this, tag, options);
  };
  const realSet = ElementProto.setAttribute;
  ElementProto.setAttribute = function setAttribute(name, value) {
    if (String(name).toLowerCase() === 'style' && this.style) {
      this.style.cssText = String(value);
      return undefined;
    }
    return realSet.call(this, name, value);
  };
}
