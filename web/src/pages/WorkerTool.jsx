// SPDX-License-Identifier: Apache-2.0
// The worker startup tool: a form over every setting of `onlyboxes worker`, and the command (or
// systemd environment file) it gives, checked as the worker would. Nothing leaves the browser.

import { useMemo, useState } from 'preact/hooks';
import { buildWorkerCommand, defaultWorkerValues, WORKER_FIELDS, WORKER_GROUPS } from '../lib/worker-command.js';
import { CopyButton } from '../components/CopyButton.jsx';

function fieldId(key) {
  return 'wt-' + key.toLowerCase().replace(/_/g, '-');
}

function Field({ f, values, set, errors }) {
  const id = fieldId(f.key);
  const error = errors.find((e) => e.key === f.key);
  const describedBy = [f.help ? id + '-help' : '', error ? id + '-error' : ''].filter(Boolean).join(' ') || undefined;
  const common = { id, 'aria-describedby': describedBy, 'aria-invalid': error ? 'true' : undefined };
  let input;
  if (f.kind === 'bool') {
    return (
      <div class="field field-check">
        <label for={id}>
          <input type="checkbox" {...common} checked={!!values[f.key]} onChange={(e) => set(f.key, e.currentTarget.checked)} /> {f.label}
        </label>
        <code class="env-name">{f.key}</code>
        {f.help && (
          <p id={id + '-help'} class="muted small">
            {f.help}
          </p>
        )}
      </div>
    );
  }
  if (f.kind === 'choice') {
    input = (
      <select {...common} value={values[f.key]} onChange={(e) => set(f.key, e.currentTarget.value)}>
        <option value="">default</option>
        {f.choices.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    );
  } else if (f.kind === 'lines' || f.kind === 'labels') {
    input = <textarea {...common} rows={3} placeholder={f.placeholder} value={values[f.key]} onInput={(e) => set(f.key, e.currentTarget.value)} />;
  } else {
    const disabled = f.manualOnly && values.callTimeoutMode !== 'manual';
    input = (
      <input
        {...common}
        type={f.secret ? 'password' : 'text'}
        inputMode={f.kind === 'int' ? 'numeric' : undefined}
        autocomplete="off"
        spellcheck={false}
        disabled={disabled}
        placeholder={f.kind === 'int' && f.def !== undefined ? String(f.def) : f.placeholder}
        value={values[f.key]}
        onInput={(e) => set(f.key, e.currentTarget.value)}
      />
    );
  }
  return (
    <div class="field">
      <label for={id}>
        {f.label}
        {f.required && <span class="required"> (required)</span>}
      </label>
      {f.manualOnly && (
        <div class="inline-choices" role="radiogroup" aria-label="Call timeout">
          <label>
            <input type="radio" name="call-timeout-mode" checked={values.callTimeoutMode !== 'manual'} onChange={() => set('callTimeoutMode', 'auto')} /> automatic
          </label>
          <label>
            <input type="radio" name="call-timeout-mode" checked={values.callTimeoutMode === 'manual'} onChange={() => set('callTimeoutMode', 'manual')} /> manual
          </label>
        </div>
      )}
      {input}
      <code class="env-name">{f.key}</code>
      {f.help && (
        <p id={id + '-help'} class="muted small">
          {f.help}
        </p>
      )}
      {error && (
        <p id={id + '-error'} class="field-error">
          {error.message}
        </p>
      )}
    </div>
  );
}

export function WorkerToolPage() {
  const [values, setValues] = useState(defaultWorkerValues);
  const [format, setFormat] = useState('shell');
  const set = (key, value) => setValues((v) => ({ ...v, [key]: value }));
  const out = useMemo(() => buildWorkerCommand(values), [values]);
  const text = format === 'shell' ? out.command : out.envFile;
  const binaryError = out.errors.find((e) => e.key === 'binary');

  return (
    <section class="page">
      <div class="page-head">
        <h1 tabIndex={-1}>Worker startup</h1>
      </div>
      <p class="muted">
        Builds the command that starts <code>onlyboxes worker</code> on another host with the ID and secret the console gave when the worker was created. Empty fields keep the worker's default. Nothing you enter here is sent anywhere.
      </p>
      <div class="tool">
        <form class="tool-form" onSubmit={(e) => e.preventDefault()}>
          <fieldset>
            <legend>Program</legend>
            <div class="field">
              <label for="wt-binary">Path of onlyboxes</label>
              <input id="wt-binary" autocomplete="off" spellcheck={false} value={values.binary} aria-invalid={binaryError ? 'true' : undefined} onInput={(e) => set('binary', e.currentTarget.value)} />
              {binaryError && <p class="field-error">{binaryError.message}</p>}
            </div>
          </fieldset>
          {WORKER_GROUPS.map((g) => (
            <fieldset key={g.id}>
              <legend>{g.title}</legend>
              {WORKER_FIELDS.filter((f) => f.group === g.id).map((f) => (
                <Field key={f.key} f={f} values={values} set={set} errors={out.errors} />
              ))}
            </fieldset>
          ))}
          <div class="actions">
            <button type="button" class="button" onClick={() => setValues(defaultWorkerValues())}>
              Reset
            </button>
          </div>
        </form>
        <aside class="tool-output" aria-label="Result">
          <div class="segmented" role="radiogroup" aria-label="Output">
            <label>
              <input type="radio" name="wt-format" checked={format === 'shell'} onChange={() => setFormat('shell')} /> Shell command
            </label>
            <label>
              <input type="radio" name="wt-format" checked={format === 'env'} onChange={() => setFormat('env')} /> Environment file
            </label>
          </div>
          {out.errors.length > 0 && (
            <div class="notice notice-error" role="alert">
              <p>Fix these first:</p>
              <ul>
                {out.errors.map((e) => (
                  <li key={e.key + e.message}>{e.message}</li>
                ))}
              </ul>
            </div>
          )}
          {out.warnings.length > 0 && (
            <div class="notice notice-warning" role="status">
              <ul>
                {out.warnings.map((w) => (
                  <li key={w}>{w}</li>
                ))}
              </ul>
            </div>
          )}
          {format === 'env' && (
            <p class="muted small">
              For <code>EnvironmentFile=</code> of a systemd unit (examples/systemd); keep it readable by root only.
            </p>
          )}
          <pre class="tool-preview" tabIndex={0} aria-label={format === 'shell' ? 'Startup command' : 'Environment file'}>
            <code>{text || 'The command appears here once the required fields are filled in.'}</code>
          </pre>
          <CopyButton text={text} disabled={!text} label={format === 'shell' ? 'Copy command' : 'Copy file'} />
        </aside>
      </div>
    </section>
  );
}
