// Small helpers for building and filling the page.
//
// Text from the server is always set with textContent, never innerHTML, so an
// item named "<img onerror=…>" is shown as those characters and never runs.

/**
 * Creates an element: el('button', { type: 'button', class: 'link' }, 'Edit').
 * Attributes whose value is false, null or undefined are left out; true sets an
 * empty attribute (like `disabled`).
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Creates an SVG element (SVG needs its own namespace). */
export function svgEl(tag, attributes = {}, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== false && value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

/** Sets the text of the element with this id. */
export function setText(id, text) {
  document.getElementById(id).textContent = text;
}

const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const fineFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

/** "1,204 ms"; below 10 ms one decimal ("2.4 ms"), since there it matters. */
export function formatMs(ms) {
  return `${(ms < 10 ? fineFormat : numberFormat).format(ms)} ms`;
}

const priceFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 });

/** "9.99", "120.00", "1,234.50". */
export function formatPrice(price) {
  return priceFormat.format(price);
}

/** JSON as a person reads it: indented by two spaces. */
export function prettyJson(value) {
  return value === undefined ? '(nothing)' : JSON.stringify(value, null, 2);
}

/**
 * Shows an RFC 9457 problem in a box: its title in bold, its detail below.
 * The box has role="alert", so a screen reader announces it.
 * @param {HTMLElement} box
 * @param {{title?: string, status?: number, detail?: string}} problem
 */
export function showProblem(box, problem) {
  const title = problem.title ?? 'Error';
  box.replaceChildren(
    el('p', { class: 'problem-title' }, problem.status ? `${problem.status} ${title}` : title),
    problem.detail ? el('p', { class: 'problem-detail' }, problem.detail) : null,
  );
  box.hidden = false;
}

export function hideProblem(box) {
  box.hidden = true;
  box.replaceChildren();
}

/**
 * The problem to show for an answer that is not ok. Servers in front of ours
 * (a proxy) may answer without a problem document: then the status line stands in.
 */
export function problemOf(answer) {
  return answer.problem ?? { title: answer.statusText || 'Error', status: answer.status };
}

/** The problem to show when fetch itself failed: no answer came at all. */
export function networkProblem(error) {
  if (error.name === 'AbortError') return { title: 'Stopped', detail: 'The request was stopped.' };
  return { title: 'No answer', detail: `The server could not be reached (${error.message}).` };
}

/**
 * Runs `work` for a button, one run at a time: presses while it runs are ignored.
 * The button is marked aria-disabled rather than disabled, because a disabled
 * button drops the keyboard focus and the user would have to find their place again.
 */
export async function whileBusy(button, work) {
  if (button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  try {
    await work();
  } finally {
    button.removeAttribute('aria-disabled');
  }
}
