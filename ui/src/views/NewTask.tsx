import { useMemo, useState } from 'preact/hooks';
import { IMAGE_REFERENCE_MAX_LENGTH, IMAGE_REFERENCE_PATTERN } from '../../../shared/names.js';
import type { CreateTaskRequest } from '../../../shared/types.js';
import { api, ApiError } from '../api.js';
import { ErrorMessage, Page } from '../components.js';
import { useLoad } from '../hooks.js';
import { navigate } from '../router.js';

type Field = 'image' | 'name' | 'sites' | 'config';
type Problems = Partial<Record<Field, string>>;

const IMAGE = new RegExp(IMAGE_REFERENCE_PATTERN);

/** Where a JSON.parse error is, as "line L, column C" when the engine says where. */
function jsonProblem(text: string): string | null {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const pos = /position (\d+)/.exec(message);
    if (pos) {
      const before = text.slice(0, Number(pos[1]));
      const line = before.split('\n').length;
      const column = before.length - before.lastIndexOf('\n');
      return `The config is not valid JSON (line ${line}, column ${column}): ${message}`;
    }
    return `The config is not valid JSON: ${message}`;
  }
}

/** The registry's validation problems ("body.image: must match …") sorted onto their fields. */
function serverProblems(error: ApiError): Problems {
  const out: Problems = {};
  const lines = Array.isArray(error.details) ? error.details.filter((d): d is string => typeof d === 'string') : [];
  for (const line of lines.length ? lines : [error.message]) {
    const m = /^body\.(image|name|sites|config)/.exec(line);
    const field: Field | undefined = m
      ? (m[1] as Field)
      : error.code === 'unknown_site' || error.code === 'no_sites'
        ? 'sites'
        : undefined;
    if (field) out[field] = out[field] ? `${out[field]}; ${line}` : line;
  }
  return out;
}

function FieldError({ id, text }: { id: string; text: string | undefined }) {
  return text ? (
    <p id={id} class="field-error">
      {text}
    </p>
  ) : null;
}

/** Posting a task: image, optional name, target sites, config as JSON; problems shown inline. */
export function NewTask() {
  const sites = useLoad((signal) => api.sites(signal), []);
  const [image, setImage] = useState('');
  const [name, setName] = useState('');
  const [config, setConfig] = useState('{}');
  const [allSites, setAllSites] = useState(true);
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [siteFilter, setSiteFilter] = useState('');
  const [problems, setProblems] = useState<Problems>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const enabled = useMemo(() => (sites.data ?? []).filter((s) => s.enabled), [sites.data]);
  const visible = enabled.filter((s) => s.name.includes(siteFilter.trim().toLowerCase()));

  function check(): Problems {
    const p: Problems = {};
    const img = image.trim();
    if (!img) p.image = 'Enter the image to run, e.g. registry.example.org/team/analysis:1.';
    else if (img.length > IMAGE_REFERENCE_MAX_LENGTH || !IMAGE.test(img))
      p.image = 'This is not a valid image reference ([registry[:port]/]path[:tag][@sha256:digest]).';
    const json = jsonProblem(config);
    if (json) p.config = json;
    if (!allSites && chosen.size === 0) p.sites = 'Choose at least one site, or send the task to all enabled sites.';
    return p;
  }

  async function submit(e: Event) {
    e.preventDefault();
    setError(null);
    const p = check();
    setProblems(p);
    const first = (['image', 'sites', 'config'] as const).find((f) => p[f]);
    if (first) {
      document.getElementById(`task-${first}`)?.focus();
      return;
    }
    const body: CreateTaskRequest = { image: image.trim(), config: JSON.parse(config) as unknown };
    if (name.trim()) body.name = name.trim();
    if (!allSites) body.sites = [...chosen].sort();
    setBusy(true);
    try {
      const task = await api.createTask(body);
      navigate(`#/tasks/${task.id}`);
    } catch (err) {
      const apiError = err instanceof ApiError ? err : new ApiError(0, 'client_error', String(err));
      const fields = serverProblems(apiError);
      setProblems(fields);
      if (Object.keys(fields).length === 0) setError(apiError);
    } finally {
      setBusy(false);
    }
  }

  const described = (f: Field) =>
    problems[f] ? { 'aria-invalid': 'true' as const, 'aria-describedby': `task-${f}-error` } : {};

  return (
    <Page title="New task">
      <form class="task-form" onSubmit={(e) => void submit(e)} noValidate>
        <ErrorMessage error={error} />
        <label class="field">
          <span>Image</span>
          <input
            id="task-image"
            class="mono"
            value={image}
            required
            spellcheck={false}
            autoComplete="off"
            onInput={(e) => setImage((e.currentTarget as HTMLInputElement).value)}
            {...described('image')}
          />
        </label>
        <FieldError id="task-image-error" text={problems.image} />
        <label class="field">
          <span>Name (optional)</span>
          <input
            id="task-name"
            value={name}
            maxLength={200}
            onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
            {...described('name')}
          />
        </label>
        <FieldError id="task-name-error" text={problems.name} />
        <fieldset id="task-sites" tabIndex={-1} {...described('sites')}>
          <legend>Sites</legend>
          <label class="check">
            <input type="radio" name="target" checked={allSites} onChange={() => setAllSites(true)} />
            All enabled sites ({enabled.length})
          </label>
          <label class="check">
            <input type="radio" name="target" checked={!allSites} onChange={() => setAllSites(false)} />
            Chosen sites ({chosen.size} chosen)
          </label>
          {!allSites ? (
            <div class="site-picker">
              <label class="field">
                <span>Find a site</span>
                <input
                  type="search"
                  value={siteFilter}
                  onInput={(e) => setSiteFilter((e.currentTarget as HTMLInputElement).value)}
                />
              </label>
              <ul class="site-choices">
                {visible.map((s) => (
                  <li key={s.name}>
                    <label class="check">
                      <input
                        type="checkbox"
                        checked={chosen.has(s.name)}
                        onChange={(e) => {
                          const next = new Set(chosen);
                          if ((e.currentTarget as HTMLInputElement).checked) next.add(s.name);
                          else next.delete(s.name);
                          setChosen(next);
                        }}
                      />
                      {s.name}
                    </label>
                  </li>
                ))}
              </ul>
            </div>
          ) : null}
        </fieldset>
        <FieldError id="task-sites-error" text={problems.sites} />
        <label class="field">
          <span>Config (JSON)</span>
          <textarea
            id="task-config"
            class="mono"
            rows={8}
            spellcheck={false}
            value={config}
            onInput={(e) => setConfig((e.currentTarget as HTMLTextAreaElement).value)}
            {...described('config')}
          />
        </label>
        <FieldError id="task-config-error" text={problems.config} />
        <p class="muted">
          The config is handed to the container as /pht/input/config.json; the registry does not read it.
        </p>
        <button type="submit" disabled={busy}>
          Create task
        </button>
      </form>
    </Page>
  );
}
