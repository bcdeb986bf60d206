#!/usr/bin/env bash
# Build .dvc/plots_template.html: DVC's plots page with vega, vega-lite and vega-embed inlined from
# their npm packages, so `dvc plots show/diff` renders with no network. DVC adds its CDN <script>
# tags through the {scripts} placeholder; this template has none, only {plot_divs}.
# Re-run to change versions; the versions are written into the template's header.
set -euo pipefail
VEGA=${VEGA:-5.33.1} VEGA_LITE=${VEGA_LITE:-5.23.0} VEGA_EMBED=${VEGA_EMBED:-6.29.0}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" >/dev/null)
for pkg in "vega-$VEGA" "vega-lite-$VEGA_LITE" "vega-embed-$VEGA_EMBED"; do
  mkdir -p "$work/$pkg" && tar -xzf "$work/$pkg.tgz" -C "$work/$pkg"
done
out=.dvc/plots_template.html
{
  echo "<!DOCTYPE html>"
  echo "<!-- offline DVC plots template: vega@$VEGA, vega-lite@$VEGA_LITE, vega-embed@$VEGA_EMBED (npm), built by tools/build_plots_template.sh -->"
  echo "<html><head>{refresh_tag}<meta charset=\"utf-8\"><title>DVC Plot</title>"
  for f in "vega-$VEGA/package/build/vega.min.js" "vega-lite-$VEGA_LITE/package/build/vega-lite.min.js" \
           "vega-embed-$VEGA_EMBED/package/build/vega-embed.min.js"; do
    printf '<script type="text/javascript">\n'
    # a literal </script> inside the code would end the tag early
    sed 's#</script>#<\\/script>#g' "$work/$f"
    printf '\n</script>\n'
  done
  echo "<style>table { border-spacing: 15px; }</style></head><body>"
  echo "{plot_divs}"
  echo "</body></html>"
} > "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"
