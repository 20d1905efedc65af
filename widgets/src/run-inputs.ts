/** Asking for the workbook's inputs before a run: one field per input, remembered per path. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { inputValue } from './workbook';

const remembered = new Map<string, Record<string, string>>();

class InputsForm extends Widget {
  constructor(names: string[], values: Record<string, string>) {
    super();
    this.addClass('nux-run-inputs');
    for (const name of names) {
      const label = document.createElement('label');
      label.textContent = name;
      const field = document.createElement('textarea');
      field.name = name;
      field.rows = 2;
      field.value = values[name] ?? '';
      field.dataset.input = name;
      label.appendChild(field);
      this.node.appendChild(label);
      this.fields.set(name, field);
    }
  }

  getValue(): Record<string, string> {
    const values: Record<string, string> = {};
    for (const [name, field] of this.fields) {
      values[name] = field.value;
    }
    return values;
  }

  private fields = new Map<string, HTMLTextAreaElement>();
}

/** The inputs the user typed, or null when the dialog was cancelled. */
export async function askInputs(
  path: string,
  names: string[],
  schemas: Record<string, { type?: string }> = {}
): Promise<Record<string, unknown> | null> {
  if (!names.length) {
    return {};
  }
  const form = new InputsForm(names, remembered.get(path) ?? {});
  const result = await showDialog({
    title: 'Run the workbook',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  remembered.set(path, result.value);
  const inputs: Record<string, unknown> = {};
  for (const [name, text] of Object.entries(result.value)) {
    inputs[name] = inputValue(text, schemas[name]);
  }
  return inputs;
}
