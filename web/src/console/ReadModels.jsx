import { useEffect, useRef, useState } from 'preact/hooks';
import { command, gql } from '../api.js';
import { staff } from './Console.jsx';
import { Plot } from './plot.jsx';

const STATUS = `query ReadModels { readModels { name position lagEvents lagSeconds state rebuild { eventsDone eventsTotal } } }`;
const COLORS = ['#0b57d0', '#0d6b2f', '#a4161a', '#7b3fa0'];
const KEEP = 150;

export function ReadModels() {
  const [models, setModels] = useState(null);
  const [error, setError] = useState(null);
  const [message, setMessage] = useState(null);
  const samples = useRef([]);
  const [, setTick] = useState(0);

  const poll = async () => {
    try {
      const { readModels } = await gql(STATUS, {}, { session: staff });
      setModels(readModels);
      samples.current = [...samples.current, { at: Date.now() / 1000, lags: Object.fromEntries(readModels.map((m) => [m.name, m.lagSeconds])) }].slice(-KEEP);
      setTick((t) => t + 1);
      setError(null);
    } catch (e) {
      setError(e.message);
    }
  };
  useEffect(() => {
    poll();
    const timer = setInterval(poll, 2000);
    return () => clearInterval(timer);
  }, []);
  const rebuild = async (name) => {
    setMessage(null);
    setError(null);
    try {
      await command('POST', `/read-models/${name}/rebuild`, undefined, { session: staff });
      setMessage(`Rebuild of ${name} started.`);
      poll();
    } catch (e) {
      setError(e.message);
    }
  };
  const names = models?.map((m) => m.name) || [];
  const data = [samples.current.map((s) => s.at), ...names.map((n) => samples.current.map((s) => s.lags[n] ?? null))];
  return (
    <section aria-labelledby="rm-heading">
      <h1 id="rm-heading">Read models</h1>
      <div aria-live="polite">
        {message && <p class="notice">{message}</p>}
        {error && <p role="alert" class="error">{error}</p>}
      </div>
      <table>
        <caption class="visually-hidden">Read models: position, lag and state</caption>
        <thead>
          <tr><th scope="col">Read model</th><th scope="col">Position</th><th scope="col">Lag (events)</th><th scope="col">Lag (seconds)</th><th scope="col">State</th><th scope="col">Rebuild</th></tr>
        </thead>
        <tbody>
          {models?.map((m) => (
            <tr key={m.name}>
              <td>{m.name}</td>
              <td class="sku">{m.position}</td>
              <td>{m.lagEvents}</td>
              <td>{m.lagSeconds.toFixed(1)}</td>
              <td data-testid={`state-${m.name}`}>{m.state}</td>
              <td>
                {m.rebuild ? (
                  <label>
                    Rebuilding {m.name}
                    <progress max={m.rebuild.eventsTotal || 1} value={m.rebuild.eventsDone}>
                      {m.rebuild.eventsDone} of {m.rebuild.eventsTotal}
                    </progress>
                    <span>{m.rebuild.eventsDone} / {m.rebuild.eventsTotal} events</span>
                  </label>
                ) : (
                  <button type="button" onClick={() => rebuild(m.name)}>Rebuild {m.name}</button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {samples.current.length > 1 && (
        <Plot
          title="Projection lag over time (seconds)"
          data={data}
          series={names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length] }))}
        />
      )}
    </section>
  );
}
