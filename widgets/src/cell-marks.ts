/**
 * Marks on the notebook's cells: a kind badge on every `%%nux` cell, and the validation
 * problems of a cell shown on that cell (line, message, fix). Refreshed whenever the
 * workbook's session changes.
 */
import { Cell } from '@jupyterlab/cells';

import { WorkbookSession } from './session';
import { IProblem, parseHeader, problemsByCell, renderProblem } from './workbook';

const BADGE = 'nux-kind-badge';
const PROBLEMS = 'nux-cell-problems';

function child(cell: Cell, className: string): HTMLElement | null {
  return cell.node.querySelector(`:scope > .${className}`);
}

function markKind(cell: Cell): void {
  const header =
    cell.model.type === 'code' ? parseHeader(cell.model.sharedModel.getSource()) : null;
  let badge = child(cell, BADGE);
  if (!header) {
    badge?.remove();
    cell.removeClass('nux-stage-cell');
    return;
  }
  cell.addClass('nux-stage-cell');
  if (!badge) {
    badge = document.createElement('div');
    badge.className = BADGE;
    cell.node.appendChild(badge);
  }
  badge.dataset.kind = header.kind;
  badge.textContent = header.kind || '?';
  badge.title = `NUX ${header.kind} stage ${header.stage}`;
}

function markProblems(cell: Cell, problems: IProblem[]): void {
  let box = child(cell, PROBLEMS);
  if (!problems.length) {
    box?.remove();
    cell.removeClass('nux-cell-has-problems');
    return;
  }
  cell.addClass('nux-cell-has-problems');
  if (!box) {
    box = document.createElement('ul');
    box.className = PROBLEMS;
    const input = cell.node.querySelector(':scope > .jp-Cell-inputWrapper');
    if (input) {
      input.after(box);
    } else {
      cell.node.appendChild(box);
    }
  }
  box.replaceChildren(
    ...problems.map(problem => {
      const item = document.createElement('li');
      item.dataset.code = problem.code;
      if (problem.line !== undefined) {
        item.dataset.line = String(problem.line);
      }
      item.textContent = renderProblem(problem);
      return item;
    })
  );
}

/** Badge every stage cell and show each cell's problems on it. */
export function markCells(session: WorkbookSession): void {
  const byCell = problemsByCell(session.validation?.problems ?? []);
  for (const cell of session.panel.content.widgets) {
    markKind(cell);
    markProblems(cell, byCell.get(cell.model.id) ?? []);
  }
}
