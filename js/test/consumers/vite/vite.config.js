// Relative asset URLs, so the built page works from any folder of a static server.
export default { base: './', logLevel: 'warn', build: { outDir: 'dist', emptyOutDir: true } };
