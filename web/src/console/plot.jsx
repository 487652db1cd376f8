// uPlot in a Preact component: the chart is drawn into a div and redrawn when data changes. A
// table next to it carries the same numbers for screen readers.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export function Plot({ title, data, series, width = 760, height = 280, bars = false, xRange = null }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current) return undefined;
    const options = {
      title,
      width,
      height,
      series: [
        {},
        ...series.map((s) => ({
          stroke: s.stroke || '#0b57d0',
          fill: s.fill,
          label: s.label,
          width: 2,
          ...(bars ? { paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } } : {}),
        })),
      ],
      axes: [{}, ...series.map(() => ({ size: 70 }))].slice(0, 2),
      ...(xRange ? { scales: { x: { time: true, range: () => xRange } } } : {}),
    };
    const chart = new uPlot(options, data, box.current);
    return () => chart.destroy();
  }, [JSON.stringify(data), title, JSON.stringify(xRange)]);
  return <div class="plot" ref={box} role="img" aria-label={title} />;
}
