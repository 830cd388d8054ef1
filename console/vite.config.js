// Vite builds the console into hashed files under /console/assets/ that
// src/console/embed.cmake embeds into the warren binary (docs/CONSOLE.md).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    // One JS and one CSS file: fewer requests, and index.html stays tiny.
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1200,
    assetsInlineLimit: 0,
  },
});
