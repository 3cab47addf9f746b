// A hand-written SVG: grouped bars per phase (one colour per library), log-scale ops/s.
const COLOURS = ['#d62728', '#ff7f0e', '#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function fmtRate(x) {
  if (x == null || !Number.isFinite(x)) return '—'
  if (x >= 1e6) return `${(x / 1e6).toFixed(x >= 1e7 ? 1 : 2)}M`
  if (x >= 1e3) return `${(x / 1e3).toFixed(x >= 1e5 ? 0 : 1)}k`
  if (x >= 100) return x.toFixed(0)
  return x.toFixed(1)
}

/** libs: [{id, label}], phases: [{id, label}], value(libId, phaseId) -> number | undefined. */
export function chartSvg({ title, subtitle, libs, phases, value }) {
  const vals = []
  for (const l of libs) for (const p of phases) {
    const v = value(l.id, p.id)
    if (v > 0) vals.push(v)
  }
  const lo = Math.max(0, Math.floor(Math.log10(Math.min(...vals, 10))))
  const hi = Math.ceil(Math.log10(Math.max(...vals, 10) * 4)) // headroom for the labels
  const barW = 16
  const gap = 26
  const groupW = libs.length * barW + gap
  const left = 70
  const top = 92 + Math.ceil(libs.length / 3) * 18
  const plotH = 380
  const width = Math.max(760, left + phases.length * groupW + 20)
  const height = top + plotH + 60
  const y = (v) => top + plotH - ((Math.log10(v) - lo) / (hi - lo)) * plotH
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`)
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`)
  out.push(`<text x="${left}" y="26" font-size="18" font-weight="bold">${esc(title)}</text>`)
  out.push(`<text x="${left}" y="46" font-size="12" fill="#444">${esc(subtitle)}</text>`)
  libs.forEach((l, i) => {
    const lx = left + (i % 3) * 260
    const ly = 70 + Math.floor(i / 3) * 18
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`)
    out.push(`<text x="${lx + 17}" y="${ly}" font-size="12">${esc(l.label)}</text>`)
  })
  for (let d = lo; d <= hi; d++) {
    const yy = y(10 ** d)
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`)
    out.push(`<text x="${left - 6}" y="${yy + 4}" font-size="11" text-anchor="end" fill="#444">${fmtRate(10 ** d)}</text>`)
  }
  out.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" font-size="12" text-anchor="middle" fill="#444">ops/s (log scale, higher is better)</text>`)
  phases.forEach((p, pi) => {
    const gx = left + 10 + pi * groupW
    libs.forEach((l, li) => {
      const v = value(l.id, p.id)
      const x = gx + li * barW
      if (v > 0) {
        const yy = y(Math.max(v, 10 ** lo))
        out.push(`<rect x="${x}" y="${yy.toFixed(1)}" width="${barW - 2}" height="${(top + plotH - yy).toFixed(1)}" fill="${COLOURS[li % COLOURS.length]}"><title>${esc(`${l.label} · ${p.label}: ${fmtRate(v)}/s`)}</title></rect>`)
        out.push(`<text transform="translate(${x + barW / 2 + 3} ${(yy - 3).toFixed(1)}) rotate(-90)" font-size="9" fill="#333">${fmtRate(v)}</text>`)
      } else {
        out.push(`<text transform="translate(${x + barW / 2 + 3} ${top + plotH - 3}) rotate(-90)" font-size="9" fill="#999">n/a</text>`)
      }
    })
    out.push(`<text x="${gx + (libs.length * barW) / 2}" y="${top + plotH + 18}" font-size="12" text-anchor="middle">${esc(p.label)}</text>`)
  })
  out.push(`<line x1="${left}" x2="${width - 10}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`)
  out.push(`</svg>`)
  return out.join('\n') + '\n'
}
