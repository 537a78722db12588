// Module resolution hook (see test-hooks.mjs): a bare specifier that does not resolve from the
// importing file is resolved again as if imported from this wasmesh installation's package.json,
// where `wasmesh/...` names the package itself (package.json "exports") and node_modules holds uvu.
let fallbackParent;

export async function initialize(data) {
  fallbackParent = data.parentURL;
}

/** Not relative ("./", "../"), not absolute ("/"), not a URL ("node:", "file:"): a package name. */
function isBare(specifier) {
  return !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(specifier);
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !isBare(specifier) || context.parentURL === fallbackParent) throw err;
    return nextResolve(specifier, { ...context, parentURL: fallbackParent });
  }
}
