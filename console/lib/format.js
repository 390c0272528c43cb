// Formatting: times and durations.

export const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local time as `2026-11-21 21:34:02`. */
export function fmtTime(ms) {
  if (ms == null) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(ms) {
  const sign = ms < 0 ? '-' : '+';
  let s = Math.round(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const parts = [];
  if (d) parts.push(`${d}d`);
  if (hh || d) parts.push(`${hh}h`);
  if (mm || hh || d) parts.push(`${mm}m`);
  parts.push(`${s}s`);
  return sign + parts.join(' ');
}
