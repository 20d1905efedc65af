/**
 * Adding a stage from the vetted catalog: a searchable list (kind, description, vetting
 * record, resources, cost), then a form generated from the component's parameter schema; the
 * filled form becomes a new `%%nux` cell below the active one.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { cellSource, checkDraft, IStageDraft, tuneDimension } from './cell-source';
import { requestAPI } from './request';
import { ICatalog, ICatalogEntry, IGraph, IParamSchema } from './workbook';

interface IPickerState {
  entryId: string;
  query: string;
  stage: string;
  inputs: string[];
  params: Record<string, unknown>;
  tune: string[];
}

function suggestId(entry: ICatalogEntry, taken: string[]): string {
  const base =
    entry.id
      .split(/[/.]/)
      .pop()!
      .replace(/[^A-Za-z0-9_]/g, '_')
      .replace(/^[^A-Za-z_]/, 's_') || 'stage';
  let id = base;
  for (let n = 2; taken.includes(id); n++) {
    id = `${base}_${n}`;
  }
  return id;
}

function describeCost(cost: Record<string, number>): string {
  const parts: string[] = [];
  if (cost.input_per_1k) {
    parts.push(`in $${cost.input_per_1k}/1K tokens`);
  }
  if (cost.output_per_1k) {
    parts.push(`out $${cost.output_per_1k}/1K tokens`);
  }
  if (cost.per_call) {
    parts.push(`$${cost.per_call}/call`);
  }
  if (cost.replica_hour) {
    parts.push(`$${cost.replica_hour}/replica-hour`);
  }
  return parts.join(', ') || 'free';
}

function describeResources(resources: Record<string, unknown>): string {
  const amount = (key: string): number => Number(resources[key] ?? 0) || 0;
  const parts = [`${amount('num_cpus') || 1} CPU`];
  if (amount('num_gpus')) {
    parts.push(`${amount('num_gpus')} GPU`);
  }
  if (amount('memory_mb')) {
    parts.push(`${amount('memory_mb')} MB`);
  }
  return parts.join(', ');
}

export class CatalogPicker extends Widget {
  constructor(
    private readonly catalog: ICatalog,
    private readonly names: string[],
    private readonly taken: string[],
    state: IPickerState | null,
    errors: string[]
  ) {
    super();
    this.addClass('nux-catalog-picker');
    const first = catalog.components[0];
    this.state = state ?? {
      entryId: first?.id ?? '',
      query: '',
      stage: first ? suggestId(first, taken) : '',
      inputs: names.length ? [names[names.length - 1]] : [],
      params: {},
      tune: []
    };
    this.search = document.createElement('input');
    this.search.type = 'search';
    this.search.placeholder = 'Search the vetted catalog';
    this.search.className = 'nux-catalog-search';
    this.search.value = this.state.query;
    this.search.oninput = () => {
      this.state.query = this.search.value;
      this.renderList();
    };
    this.list = document.createElement('ul');
    this.list.className = 'nux-catalog-list';
    this.detail = document.createElement('div');
    this.detail.className = 'nux-catalog-detail';
    this.errors = document.createElement('ul');
    this.errors.className = 'nux-catalog-errors';
    for (const message of errors) {
      const li = document.createElement('li');
      li.textContent = message;
      this.errors.appendChild(li);
    }
    const columns = document.createElement('div');
    columns.className = 'nux-catalog-columns';
    const left = document.createElement('div');
    left.append(this.search, this.list);
    columns.append(left, this.detail);
    this.node.append(this.errors, columns);
    this.renderList();
    this.renderDetail();
  }

  get entry(): ICatalogEntry | undefined {
    return this.catalog.components.find(c => c.id === this.state.entryId);
  }

  getValue(): { draft: IStageDraft | null; state: IPickerState } {
    const entry = this.entry;
    return {
      state: this.state,
      draft: entry
        ? {
            stage: this.state.stage.trim(),
            entry,
            inputs: this.state.inputs,
            params: this.state.params,
            tune: this.state.tune
          }
        : null
    };
  }

  private renderList(): void {
    const query = this.state.query.toLowerCase();
    const matches = this.catalog.components.filter(c =>
      [c.id, c.kind, c.description].some(text => text.toLowerCase().includes(query))
    );
    this.list.replaceChildren(
      ...matches.map(entry => {
        const item = document.createElement('li');
        item.className =
          'nux-catalog-item' + (entry.id === this.state.entryId ? ' nux-selected' : '');
        item.dataset.component = entry.id;
        const kind = document.createElement('span');
        kind.className = 'nux-kind-badge nux-inline';
        kind.dataset.kind = entry.kind;
        kind.textContent = entry.kind;
        const name = document.createElement('span');
        name.textContent = entry.id;
        item.append(kind, name);
        item.onclick = () => {
          if (this.state.entryId !== entry.id) {
            this.state.entryId = entry.id;
            this.state.stage = suggestId(entry, this.taken);
            this.state.params = {};
            this.state.tune = [];
          }
          this.renderList();
          this.renderDetail();
        };
        return item;
      })
    );
  }

  private field(labelText: string, control: HTMLElement, note = ''): HTMLElement {
    const label = document.createElement('label');
    label.className = 'nux-form-field';
    const title = document.createElement('span');
    title.textContent = labelText;
    label.append(title, control);
    if (note) {
      const small = document.createElement('small');
      small.textContent = note;
      label.appendChild(small);
    }
    return label;
  }

  private paramControl(name: string, schema: IParamSchema): HTMLElement {
    const current = this.state.params[name] ?? schema.default;
    if (Array.isArray(schema.enum)) {
      const select = document.createElement('select');
      for (const option of schema.enum) {
        const el = document.createElement('option');
        el.value = JSON.stringify(option);
        el.textContent = String(option);
        el.selected = option === current;
        select.appendChild(el);
      }
      select.onchange = () => {
        this.state.params[name] = JSON.parse(select.value);
      };
      return select;
    }
    if (schema.type === 'boolean') {
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = Boolean(current);
      box.onchange = () => {
        this.state.params[name] = box.checked;
      };
      return box;
    }
    const input = document.createElement('input');
    const numeric = schema.type === 'integer' || schema.type === 'number';
    input.type = numeric ? 'number' : 'text';
    if (numeric) {
      if (typeof schema.minimum === 'number') {
        input.min = String(schema.minimum);
      }
      if (typeof schema.maximum === 'number') {
        input.max = String(schema.maximum);
      }
      input.step = schema.type === 'integer' ? '1' : 'any';
    }
    input.value = current === undefined ? '' : String(current);
    input.oninput = () => {
      this.state.params[name] =
        input.value === '' ? undefined : numeric ? Number(input.value) : input.value;
    };
    return input;
  }

  private renderDetail(): void {
    const entry = this.entry;
    this.detail.replaceChildren();
    if (!entry) {
      this.detail.textContent = 'The catalog has no components.';
      return;
    }
    const head = document.createElement('h3');
    head.textContent = `${entry.id} ${entry.version}`;
    const about = document.createElement('p');
    about.textContent = entry.description;
    const facts = document.createElement('dl');
    facts.className = 'nux-catalog-facts';
    const vet = entry.vetting;
    for (const [term, value] of [
      ['kind', entry.kind],
      ['vetted', `${vet.owner}, ${vet.date}`],
      ['data', vet.data_classes.join(', ') || '-'],
      ['egress', vet.egress],
      ['resources', describeResources(entry.resources)],
      ['cost', describeCost(entry.cost)]
    ]) {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = value;
      facts.append(dt, dd);
    }
    const form = document.createElement('div');
    form.className = 'nux-catalog-form';
    const stage = document.createElement('input');
    stage.name = 'stage';
    stage.value = this.state.stage;
    stage.oninput = () => {
      this.state.stage = stage.value;
    };
    form.appendChild(this.field('stage id', stage));
    const inputs = document.createElement('div');
    inputs.className = 'nux-form-inputs';
    for (const name of this.names) {
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = name;
      box.checked = this.state.inputs.includes(name);
      box.onchange = () => {
        this.state.inputs = box.checked
          ? [...this.state.inputs, name]
          : this.state.inputs.filter(n => n !== name);
      };
      const label = document.createElement('label');
      label.append(box, document.createTextNode(name));
      inputs.appendChild(label);
    }
    form.appendChild(this.field('inputs', inputs));
    for (const [name, schema] of Object.entries(entry.params)) {
      const control = this.paramControl(name, schema);
      control.dataset.param = name;
      const wrap = document.createElement('div');
      wrap.className = 'nux-form-param';
      wrap.appendChild(control);
      const dimension = tuneDimension(schema);
      if (dimension) {
        const tune = document.createElement('input');
        tune.type = 'checkbox';
        tune.dataset.tune = name;
        tune.checked = this.state.tune.includes(name);
        tune.onchange = () => {
          this.state.tune = tune.checked
            ? [...this.state.tune, name]
            : this.state.tune.filter(n => n !== name);
        };
        const label = document.createElement('label');
        label.className = 'nux-tunable';
        label.title = `tunable: ${JSON.stringify(dimension)}`;
        label.append(tune, document.createTextNode('tune'));
        wrap.appendChild(label);
      }
      const required = entry.required.includes(name) ? ' *' : '';
      form.appendChild(this.field(name + required, wrap, schema.description ?? ''));
    }
    this.detail.append(head, about, facts, form);
  }

  private state: IPickerState;
  private search: HTMLInputElement;
  private list: HTMLUListElement;
  private detail: HTMLDivElement;
  private errors: HTMLUListElement;
}

/** Pick a component, fill its form and insert the cell below the active one. */
export async function addCatalogCell(
  panel: NotebookPanel,
  graph: IGraph | null,
  catalogPath: string
): Promise<string | null> {
  const query = catalogPath ? `?catalog=${encodeURIComponent(catalogPath)}` : '';
  const catalog = await requestAPI<ICatalog>(`catalog${query}`);
  const names = (graph?.nodes ?? []).map(n => n.id);
  const taken = names;
  let state: IPickerState | null = null;
  let errors: string[] = [];
  for (;;) {
    const picker: CatalogPicker = new CatalogPicker(catalog, names, taken, state, errors);
    const result: Dialog.IResult<ReturnType<CatalogPicker['getValue']>> = await showDialog({
      title: 'Add a stage from the vetted catalog',
      body: picker,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Add cell' })]
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    state = result.value.state;
    const draft = result.value.draft;
    if (!draft) {
      return null;
    }
    errors = checkDraft(draft, taken);
    if (errors.length) {
      continue;
    }
    const notebook = panel.content;
    NotebookActions.insertBelow(notebook);
    const cell = notebook.activeCell;
    if (!cell) {
      return null;
    }
    if (cell.model.type !== 'code') {
      NotebookActions.changeCellType(notebook, 'code');
    }
    notebook.activeCell.model.sharedModel.setSource(cellSource(draft));
    return draft.stage;
  }
}
