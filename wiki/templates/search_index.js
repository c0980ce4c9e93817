// headwiki search index: one entry per head (m: model, l: label, u: URL from the site root, r: roles, v: metrics).
// A .js file (not JSON) because fetch() fails on file:// pages.
window.HEADWIKI_INDEX = {{ entries | tojson }};
