"""The report page: one self-contained HTML file (inline CSS, plots as inline SVG, no script, nothing fetched) for a
validate run (``validate_page``) or a pack (``pack_page``), built from ``page``'s parts and ``plots``' figures."""
