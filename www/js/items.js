// The Items panel: list, add, edit in place and delete, over the /api/items view.
//
//   GET    /api/items?limit=&offset=   → {"items":[…],"total":T,"limit":L,"offset":O}
//   POST   /api/items       {name, price} → 201 + the item
//   PUT    /api/items/{id}  {name, price} → 200 + the item (a full replace)
//   DELETE /api/items/{id}                → 204
//
// The page does not validate: it sends what was typed and the server judges.
// The rules then live in one place, and a 422 names each field that is wrong:
//   {"status":422, "errors":[{"field":"name","message":"must be 1 to 100 characters long"}]}
// so each message is shown under the input it names.
//
// The list is live: the panel reads the event feed (js/live.js, GET /api/events),
// and every change to the items, made in this tab, another one or with curl,
// redraws the page of the list on show from a fresh GET. Rows that did not change
// stay as they are, so a row being edited keeps what was typed and the focus stays
// where it was; a row changed elsewhere is marked like one changed here. A `reset`
// (events were missed) and every (re)connection redraw it the same way.

import { call } from './http.js';
import { el, formatPrice, hideProblem, networkProblem, problemOf, setText, showProblem, whileBusy } from './dom.js';
import { onFeed, startFeed } from './live.js';

const PAGE_SIZE = 10;

/** The fields of an item and the words the page uses for them. */
const FIELD_LABELS = { name: 'Name', price: 'Price' };

/** What the live indicator says in each state of the feed. */
const FEED_WORDS = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  paused: 'paused while the lab runs',
};

/** If the feed has not opened by then, the list is loaded without it. */
const FEED_WAIT_MS = 2_000;

export function setupItems() {
  const addForm = document.getElementById('item-add');
  const addButton = addForm.querySelector('button[type="submit"]');
  const addFields = {
    name: { input: document.getElementById('add-name'), message: document.getElementById('add-name-error') },
    price: { input: document.getElementById('add-price'), message: document.getElementById('add-price-error') },
  };
  const tbody = document.getElementById('items-body');
  const caption = document.getElementById('items-caption');
  const prevButton = document.getElementById('items-prev');
  const nextButton = document.getElementById('items-next');
  const problemBox = document.getElementById('items-problem');
  const liveBox = document.getElementById('items-live');

  let offset = 0;
  let total = 0;
  let loads = 0;              // every load() counts; only the latest one draws
  let loaded = false;
  let drawnOffset = 0;        // the offset of the page the table shows
  let refreshing = false;     // refresh() is running
  let again = false;          // and something changed since its load started
  let problemIsLoad = false;  // the problem box shows a failed load, which the next good one clears
  /** The item row elements show (their data, to tell whether a redraw changes them). */
  const shown = new WeakMap();
  /** The newest version of each item seen, by id: what Cancel goes back to. */
  const latest = new Map();
  /** Changes made elsewhere, by id: the updated_at to mark when that version is drawn. */
  const marks = new Map();
  /** Ids the feed said were deleted. */
  const deleted = new Set();

  addForm.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(addButton, addItem);
  });
  prevButton.addEventListener('click', () => { offset = Math.max(0, offset - PAGE_SIZE); load(); });
  nextButton.addEventListener('click', () => { offset += PAGE_SIZE; load(); });

  // The feed first, then the list: a change made between the two is then never missed.
  onFeed('state', (state) => {
    liveBox.textContent = FEED_WORDS[state];
    liveBox.dataset.state = state;
  });
  onFeed('open', refresh);
  onFeed('reset', refresh);
  onFeed('item', ({ op, item }) => {
    if (op === 'deleted') {
      deleted.add(item.id);
      latest.delete(item.id);
    } else if (item.updated_at) {
      remember(item);
      marks.set(item.id, item.updated_at);
    }
    refresh();
  });
  startFeed();
  setTimeout(() => { if (!loaded) refresh(); }, FEED_WAIT_MS);

  // ───── The list ─────

  /** Loads the current page again, once at a time: changes that come meanwhile make one more load. */
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      do {
        again = false;
        await load();
      } while (again);
    } finally {
      refreshing = false;
    }
  }

  /** Fetches the current page and draws it; `highlight` marks a row that just changed. */
  async function load(highlight) {
    const mine = ++loads;
    loaded = true;
    let answer;
    try {
      answer = await call(`/api/items?limit=${PAGE_SIZE}&offset=${offset}`);
    } catch (error) {
      if (mine !== loads) return;
      showProblem(problemBox, networkProblem(error));
      problemIsLoad = true;
      return;
    }
    if (mine !== loads) return; // a later load is under way: it draws
    if (!answer.ok) {
      showProblem(problemBox, problemOf(answer));
      problemIsLoad = true;
      return;
    }
    if (problemIsLoad) {
      hideProblem(problemBox);
      problemIsLoad = false;
    }
    const page = answer.data;
    total = page.total;
    if (page.items.length === 0 && offset > 0) {
      // The last item of the last page was deleted: show the page before.
      offset = Math.max(0, offset - PAGE_SIZE);
      await load(highlight);
      return;
    }
    draw(page.items, highlight);
    caption.textContent = total === 0
      ? 'No items yet: add one above.'
      : `Items ${offset + 1} to ${offset + page.items.length} of ${total}`;
    prevButton.disabled = offset === 0;
    nextButton.disabled = offset + page.items.length >= total;
  }

  /**
   * Puts these items in the table. A row whose item did not change is kept, and so
   * is a row being edited (its inputs keep what was typed); the others are made
   * anew. If the focus was in a row that was made anew, it goes to the same control
   * of the new row; if that row is gone, to the caption.
   */
  function draw(items, highlight) {
    const focused = focusIn(tbody);
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.id, row]));
    const rows = items.map((item) => {
      remember(item);
      const mark = marks.get(item.id);
      if (mark !== undefined && mark <= item.updated_at) marks.delete(item.id);
      const row = existing.get(String(item.id));
      if (row?.classList.contains('editing')) return row;
      if (row && item.id !== highlight && sameItem(shown.get(row), item)) return row;
      return viewRow(item, item.id === highlight || mark === item.updated_at);
    });
    const kept = new Set(rows);
    for (const [id, row] of existing) {
      if (kept.has(row)) continue;
      if (row.classList.contains('editing') && offset === drawnOffset) {
        const name = shown.get(row).name;
        setText('items-status', deleted.has(Number(id))
          ? `Item ${id}, “${name}”, was deleted elsewhere while you edited it.`
          : `Item ${id}, “${name}”, moved to another page while you edited it; it was not saved.`);
      }
      row.remove();
    }
    drawnOffset = offset;
    // The rows kept are in the same order as before, so inserting the new ones around them never moves them.
    rows.forEach((row, i) => {
      if (tbody.rows[i] !== row) tbody.insertBefore(row, tbody.rows[i] ?? null);
    });
    if (focused && document.activeElement !== focused.element) {
      const row = [...tbody.rows].find((r) => r.dataset.id === focused.id);
      const controls = row ? row.querySelectorAll('button, input') : [];
      (controls[focused.index] ?? caption).focus();
    }
  }

  /** Keeps the newest version of an item seen. */
  function remember(item) {
    const known = latest.get(item.id);
    if (!known || !(item.updated_at < known.updated_at)) latest.set(item.id, item);
  }

  /** A row that shows an item, with its Edit and Delete buttons. */
  function viewRow(item, highlight = false) {
    const editButton = el('button', { type: 'button', class: 'small', 'aria-label': `Edit ${item.name}` }, 'Edit');
    const deleteButton = el('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${item.name}` },
      'Delete');
    const row = el('tr', { 'data-id': item.id, class: highlight ? 'fresh' : null },
      el('td', {}, String(item.id)),
      el('td', { class: 'item-name' }, item.name),
      el('td', { class: 'num item-price' }, formatPrice(item.price)),
      el('td', {}, el('time', { datetime: item.updated_at }, item.updated_at.replace('T', ' ').replace('Z', ''))),
      el('td', { class: 'actions' }, editButton, deleteButton),
    );
    editButton.addEventListener('click', () => {
      const editor = editRow(item);
      row.replaceWith(editor);
      editor.querySelector('input').focus();
    });
    deleteButton.addEventListener('click', () => whileBusy(deleteButton, () => deleteItem(item)));
    shown.set(row, item);
    return row;
  }

  /** The same row as a small form: the item's name and price in inputs, Save and Cancel. */
  function editRow(item) {
    const id = `edit-${item.id}`;
    const fields = {
      name: { input: el('input', { type: 'text', id: `${id}-name`, value: item.name, autocomplete: 'off',
        'aria-describedby': `${id}-name-error` }) },
      price: { input: el('input', { type: 'text', id: `${id}-price`, value: String(item.price), inputmode: 'decimal',
        autocomplete: 'off', 'aria-describedby': `${id}-price-error` }) },
    };
    fields.name.message = el('p', { class: 'field-error', id: `${id}-name-error` });
    fields.price.message = el('p', { class: 'field-error', id: `${id}-price-error` });

    const saveButton = el('button', { type: 'button', class: 'small' }, 'Save');
    const cancelButton = el('button', { type: 'button', class: 'small secondary' }, 'Cancel');
    const row = el('tr', { 'data-id': item.id, class: 'editing' },
      el('td', {}, String(item.id)),
      el('td', {},
        el('label', { for: fields.name.input.id, class: 'visually-hidden' }, `Name of item ${item.id}`),
        fields.name.input, fields.name.message),
      el('td', { class: 'num' },
        el('label', { for: fields.price.input.id, class: 'visually-hidden' }, `Price of item ${item.id}`),
        fields.price.input, fields.price.message),
      el('td', {}, el('time', { datetime: item.updated_at }, item.updated_at.replace('T', ' ').replace('Z', ''))),
      el('td', { class: 'actions' }, saveButton, cancelButton),
    );

    const save = () => whileBusy(saveButton, () => saveItem(item, fields, row));
    const cancel = () => {
      // Back to the item as it is now: it may have changed elsewhere meanwhile.
      const view = viewRow(latest.get(item.id) ?? item);
      row.replaceWith(view);
      view.querySelector('button').focus();
    };
    saveButton.addEventListener('click', save);
    cancelButton.addEventListener('click', cancel);
    // The keys a person expects in a form: Enter saves, Escape gives up.
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && event.target.tagName === 'INPUT') { event.preventDefault(); save(); }
      if (event.key === 'Escape') { event.preventDefault(); cancel(); }
    });
    shown.set(row, item);
    return row;
  }

  // ───── Add, save, delete ─────

  async function addItem() {
    hideProblem(problemBox);
    const body = itemBody(addFields.name.input.value, addFields.price.input.value);
    const answer = await send('/api/items', 'POST', body);
    if (!answer) return;
    if (answer.ok) {
      clearFieldErrors(addFields);
      addForm.reset();
      const item = answer.data;
      setText('items-status', `Added item ${item.id}, “${item.name}”.`);
      // New items go at the end: show the last page, where it is.
      offset = Math.floor(total / PAGE_SIZE) * PAGE_SIZE;
      await load(item.id);
      addFields.name.input.focus();
    } else {
      reportFailure(answer, addFields, 'The item was not added');
    }
  }

  async function saveItem(item, fields, row) {
    hideProblem(problemBox);
    const body = itemBody(fields.name.input.value, fields.price.input.value);
    const answer = await send(`/api/items/${item.id}`, 'PUT', body);
    if (!answer) return;
    if (answer.ok) {
      const saved = answer.data;
      remember(saved);
      setText('items-status', `Saved item ${saved.id}: “${saved.name}” at ${formatPrice(saved.price)}.`);
      const view = viewRow(saved, true);
      row.replaceWith(view);
      view.querySelector('button').focus();
    } else {
      reportFailure(answer, fields, `Item ${item.id} was not saved`);
      if (answer.status === 404) await load(); // deleted meanwhile: show the list as it is now
    }
  }

  async function deleteItem(item) {
    hideProblem(problemBox);
    const answer = await send(`/api/items/${item.id}`, 'DELETE');
    if (!answer) return;
    if (answer.ok) {
      setText('items-status', `Deleted item ${item.id}, “${item.name}”.`);
    } else {
      setText('items-status', `Item ${item.id} was not deleted.`);
      showProblem(problemBox, problemOf(answer));
    }
    await load();
    caption.focus(); // the row and its button are gone: put the focus somewhere near
  }

  /** call(), with a network failure shown in the panel; then it returns null. */
  async function send(path, method, body) {
    try {
      return await call(path, { method, body });
    } catch (error) {
      showProblem(problemBox, networkProblem(error));
      return null;
    }
  }

  /** A 422 goes next to its fields; anything else, and errors naming no field here, into the problem box. */
  function reportFailure(answer, fields, what) {
    const problem = problemOf(answer);
    if (answer.status === 422 && Array.isArray(problem.errors)) {
      const unplaced = showFieldErrors(problem.errors, fields);
      setText('items-status', `${what}: the server answered 422, see the message by each field.`);
      if (unplaced.length) showProblem(problemBox, { ...problem, detail: unplaced.join('; ') });
    } else {
      clearFieldErrors(fields);
      setText('items-status', `${what}.`);
      showProblem(problemBox, problem);
    }
  }
}

/**
 * The JSON body from what was typed, sent for the server to judge. The name loses
 * the spaces around it; a price that reads as a number is sent as one, anything
 * else as the text typed, and an empty price not at all (the server says it is required).
 */
function itemBody(name, price) {
  const body = { name: name.trim() };
  const typed = price.trim();
  if (typed !== '') body.price = Number.isFinite(Number(typed)) ? Number(typed) : typed;
  return body;
}

/**
 * Puts each error's message under the input of the field it names and marks that
 * input invalid; focuses the first one. Returns the messages of the errors that
 * name a field not shown here, so the caller can show them elsewhere.
 */
function showFieldErrors(errors, fields) {
  clearFieldErrors(fields);
  const unplaced = [];
  for (const { field, message } of errors) {
    const target = fields[field];
    if (!target) {
      unplaced.push(field ? `${field} ${message}` : message);
      continue;
    }
    // A field may have more than one error: keep them all.
    const text = `${FIELD_LABELS[field]} ${message}`;
    target.message.textContent = target.message.textContent ? `${target.message.textContent}; ${text}` : text;
    target.input.setAttribute('aria-invalid', 'true');
  }
  Object.values(fields).find(({ input }) => input.getAttribute('aria-invalid') === 'true')?.input.focus();
  return unplaced;
}

function clearFieldErrors(fields) {
  for (const { input, message } of Object.values(fields)) {
    input.removeAttribute('aria-invalid');
    message.textContent = '';
  }
}

/** Whether two versions of an item show the same. */
function sameItem(a, b) {
  return Boolean(a) && a.name === b.name && a.price === b.price && a.updated_at === b.updated_at;
}

/** Where the focus is in these rows: the element, its row's id and its place among the row's controls. */
function focusIn(tbody) {
  const element = document.activeElement;
  const row = element && tbody.contains(element) ? element.closest('tr') : null;
  if (!row) return null;
  return { element, id: row.dataset.id, index: [...row.querySelectorAll('button, input')].indexOf(element) };
}
