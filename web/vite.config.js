import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';
import { fileURLToPath } from 'node:url';

// Built into the checkout's target/web (outside git); `shop serve` serves it with SHOP_WEB_DIR.
const out = process.env.SHOP_WEB_OUT || fileURLToPath(new URL('../target/web', import.meta.url));

export default defineConfig({
  plugins: [preact()],
  build: { outDir: out, emptyOutDir: true, sourcemap: false },
  // `npm run dev` against `./scripts/run.sh` (command API 8080, query API 8081)
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/graphql': { target: 'http://127.0.0.1:8081', ws: true },
    },
  },
});
