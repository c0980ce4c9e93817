// headwiki search index: one entry per head (m: model, l: label, u: URL from the site root, r: roles, v: metrics in the
// units the pages show, e.g. accuracy deltas in points) and each model's metric units.
// A .js file (not JSON) because fetch() fails on file:// pages.
window.HEADWIKI_INDEX = {{ entries | tojson }};
window.HEADWIKI_UNITS = {{ units | tojson }};
