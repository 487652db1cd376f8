import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { gql, when } from '../api.js';
import { staff } from './Console.jsx';

const TYPES = ['order', 'payment', 'cart', 'checkout', 'product', 'inventory'];

const HISTORY = `query History($type: String!, $id: String!, $after: String) {
  history(aggregateType: $type, aggregateId: $id, first: 100, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { eventId sequence eventType eventVersion position recordedAt payload actor { id role } correlationId causationId commandId requestId } }
  }
}`;
const STATE_AT = `query StateAt($type: String!, $id: String!, $at: DateTime, $version: Int) {
  stateAt(aggregateType: $type, aggregateId: $id, at: $at, version: $version) { version asOf state }
}`;
const VERIFY = `query Verify($type: String!, $id: String!) {
  verify(aggregateType: $type, aggregateId: $id) { intact events firstBroken { sequence problem description } }
}`;

export function Audit() {
  const [type, setType] = useState('order');
  const [id, setId] = useState('');
  const [events, setEvents] = useState(null);
  const [open, setOpen] = useState(null);
  const [asOf, setAsOf] = useState('');
  const [version, setVersion] = useState('');
  const [state, setState] = useState(undefined);
  const [verdict, setVerdict] = useState(null);
  const [error, setError] = useState(null);
  const stream = { type, id: id.trim() };

  const run = async (work) => {
    setError(null);
    try {
      await work();
    } catch (e) {
      setError(e.message);
    }
  };
  const loadHistory = () =>
    run(async () => {
      let all = [];
      let after = null;
      for (;;) {
        const { history } = await gql(HISTORY, { ...stream, after }, { session: staff });
        all = all.concat(history.edges.map((e) => e.node));
        if (!history.pageInfo.hasNextPage) break;
        after = history.pageInfo.endCursor;
      }
      setEvents(all);
      setVerdict(null);
      setState(undefined);
    });
  const loadState = (event) => {
    event.preventDefault();
    run(async () => {
      const variables = { ...stream, at: null, version: null };
      if (version) variables.version = Number(version);
      else variables.at = new Date(asOf).toISOString();
      const { stateAt } = await gql(STATE_AT, variables, { session: staff });
      setState(stateAt);
    });
  };
  const verify = () => run(async () => setVerdict((await gql(VERIFY, stream, { session: staff })).verify));
  const broken = verdict?.firstBroken?.sequence;

  return (
    <section aria-labelledby="audit-heading">
      <h1 id="audit-heading">Audit</h1>
      <form class="inline" onSubmit={(e) => (e.preventDefault(), loadHistory())}>
        <label>
          Stream type
          <select value={type} onChange={(e) => setType(e.currentTarget.value)}>
            {TYPES.map((t) => <option key={t} value={t}>{t}</option>)}
          </select>
        </label>
        <label>Stream id<input value={id} onInput={(e) => setId(e.currentTarget.value)} required size="40" /></label>
        <button type="submit">Show history</button>
        <button type="button" class="secondary" onClick={verify} disabled={!id.trim()}>Verify chain</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      <div aria-live="polite">
        {verdict && verdict.intact && <p class="badge ok" data-testid="verdict">Chain intact: {verdict.events} events verified</p>}
        {verdict && !verdict.intact && (
          <p class="badge bad" data-testid="verdict" role="alert">
            Chain broken at event {verdict.firstBroken.sequence}: {verdict.firstBroken.problem} — {verdict.firstBroken.description}
          </p>
        )}
      </div>
      {events && (
        <>
          <h2>History ({events.length === 1 ? '1 event' : `${events.length} events`})</h2>
          <table>
            <caption class="visually-hidden">Events of {type} {id}, oldest first</caption>
            <thead>
              <tr><th scope="col">#</th><th scope="col">Event</th><th scope="col">Recorded</th><th scope="col">Actor</th><th scope="col">Caused by</th><th scope="col">Correlation</th><th scope="col">Payload</th></tr>
            </thead>
            <tbody>
              {events.map((e) => (
                <Fragment key={e.eventId}>
                  <tr class={broken === e.sequence ? 'broken' : ''}>
                    <td>{e.sequence}</td>
                    <td>{e.eventType} <span class="sku">v{e.eventVersion}</span></td>
                    <td><time datetime={e.recordedAt}>{when(e.recordedAt)}</time></td>
                    <td>{e.actor ? `${e.actor.role}: ${e.actor.id}` : '—'}</td>
                    <td class="sku">{e.causationId || '—'}</td>
                    <td class="sku">{e.correlationId ? e.correlationId.slice(0, 8) : '—'}</td>
                    <td>
                      <button type="button" class="link" aria-expanded={open === e.eventId} onClick={() => setOpen(open === e.eventId ? null : e.eventId)}>
                        {open === e.eventId ? 'Hide' : 'Show'} payload of event {e.sequence}
                      </button>
                    </td>
                  </tr>
                  {open === e.eventId && (
                    <tr>
                      <td colSpan={7}><pre tabIndex={0} aria-label={`Payload of event ${e.sequence}`}>{JSON.stringify(e.payload, null, 2)}</pre></td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
          <h2>State as of</h2>
          <form class="inline" onSubmit={loadState}>
            <label>Time<input type="datetime-local" step="1" value={asOf} onInput={(e) => setAsOf(e.currentTarget.value)} disabled={!!version} required={!version} /></label>
            <label>or after event #<input type="number" min="1" value={version} onInput={(e) => setVersion(e.currentTarget.value)} /></label>
            <button type="submit">Show state</button>
          </form>
          {state === null && <p>The stream had no events by then.</p>}
          {state && (
            <>
              <p data-testid="state-version">After event {state.version}, as of {when(state.asOf)}</p>
              <pre tabIndex={0} aria-label="State">{JSON.stringify(state.state, null, 2)}</pre>
            </>
          )}
        </>
      )}
    </section>
  );
}
