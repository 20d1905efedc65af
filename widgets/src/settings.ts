/** The extension's settings (schema/plugin.json), as the settings editor writes them. */
import { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface INuxSettings {
  catalogPath: string;
  validateDelayMs: number;
  exportOutDir: string;
  exportStack: string;
  exportWithEval: boolean;
  tuneTrials: number;
}

export const DEFAULT_SETTINGS: INuxSettings = {
  catalogPath: '',
  validateDelayMs: 600,
  exportOutDir: 'deploy',
  exportStack: 'dev',
  exportWithEval: true,
  tuneTrials: 20
};

/** The current settings, kept up to date as the user edits them. */
export class NuxSettings {
  values: INuxSettings = { ...DEFAULT_SETTINGS };

  watch(settings: ISettingRegistry.ISettings): void {
    const read = () => {
      this.values = {
        ...DEFAULT_SETTINGS,
        ...(settings.composite as Partial<INuxSettings>)
      };
    };
    read();
    settings.changed.connect(read);
  }
}
