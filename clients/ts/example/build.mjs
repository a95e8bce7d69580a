// Builds the example page into example/dist (one bundled script and index.html): `npm run example`.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

const here = new URL(".", import.meta.url).pathname;
await mkdir(`${here}dist`, { recursive: true });
await build({
  entryPoints: [`${here}main.ts`],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: `${here}dist/main.js`,
  logLevel: "warning",
});
await copyFile(`${here}index.html`, `${here}dist/index.html`);
