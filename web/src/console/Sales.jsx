import { useEffect, useState } from 'preact/hooks';
import { gql, money } from '../api.js';
import { staff } from './Console.jsx';
import { Plot } from './plot.jsx';

const SALES = `query Sales($from: NaiveDate!, $to: NaiveDate!) {
  salesByDay(from: $from, to: $to) { day units revenue { amountMinor currency } products { sku units } }
}`;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

export function Sales() {
  const today = new Date();
  const [from, setFrom] = useState(isoDay(new Date(today.getTime() - 29 * 86400000)));
  const [to, setTo] = useState(isoDay(today));
  const [days, setDays] = useState(null);
  const [[shownFrom, shownTo], setShown] = useState([from, to]);
  const [error, setError] = useState(null);
  const load = () =>
    gql(SALES, { from, to }, { session: staff }).then(
      (d) => {
        setShown([from, to]);
        setDays(d.salesByDay);
      },
      (e) => setError(e.message),
    );
  useEffect(() => {
    load();
  }, []);

  // one series per currency would need a chart each; the plot shows the first currency
  const currency = days?.[0]?.revenue.currency;
  const shown = days?.filter((d) => d.revenue.currency === currency) || [];
  // the whole requested period on the x axis
  const range = days ? [Date.parse(`${shownFrom}T00:00:00Z`) / 1000, Date.parse(`${shownTo}T23:59:59Z`) / 1000] : null;
  const data = [
    shown.map((d) => Date.parse(`${d.day}T12:00:00Z`) / 1000),
    shown.map((d) => d.revenue.amountMinor / 100),
  ];
  return (
    <section aria-labelledby="sales-heading">
      <h1 id="sales-heading">Sales by day</h1>
      <form class="inline" onSubmit={(e) => (e.preventDefault(), load())}>
        <label>From<input type="date" value={from} onInput={(e) => setFrom(e.currentTarget.value)} required /></label>
        <label>To<input type="date" value={to} onInput={(e) => setTo(e.currentTarget.value)} required /></label>
        <button type="submit">Show</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      {days && days.length === 0 && <p>No sales in this period.</p>}
      {shown.length > 0 && (
        <>
          <Plot title={`Revenue per day (${currency})`} data={data} series={[{ label: `Revenue (${currency})`, fill: 'rgba(11,87,208,0.25)' }]} bars xRange={range} />
          <table>
            <caption>Sales per day</caption>
            <thead>
              <tr><th scope="col">Day</th><th scope="col">Units</th><th scope="col">Revenue</th><th scope="col">Best seller</th></tr>
            </thead>
            <tbody>
              {days.map((d) => (
                <tr key={`${d.day}-${d.revenue.currency}`}>
                  <td>{d.day}</td>
                  <td>{d.units}</td>
                  <td data-testid="sales-revenue">{money(d.revenue)}</td>
                  <td>{d.products[0] ? `${d.products[0].sku} (${d.products[0].units})` : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
