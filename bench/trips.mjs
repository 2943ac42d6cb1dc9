// What the worker itself counted per request while one scenario's load ran (scripts/bench.sh):
//
//   node bench/trips.mjs <worker log> <byte offset> <mode> <scenario>
//
// Reads the worker's log lines from the offset on (those the load wrote), and prints one TSV
// row: mode, scenario, requests, mean `d1_calls`, mean `do_calls`. A request's `do_calls`
// includes the lease refill it set off after its response, so this is the whole count.
import { openSync, readSync, fstatSync } from "node:fs";

const [file, offset, mode, scenario] = process.argv.slice(2);
const fd = openSync(file, "r");
const start = Number(offset);
const length = Math.max(0, fstatSync(fd).size - start);
const buffer = Buffer.alloc(length);
readSync(fd, buffer, 0, length, start);
let n = 0, d1 = 0, dos = 0;
for (const line of buffer.toString("utf8").split("\n")) {
  const at = line.indexOf('{"request_id"');
  if (at < 0) continue;
  let j;
  try { j = JSON.parse(line.slice(at)); } catch { continue; }
  n++;
  d1 += j.d1_calls || 0;
  dos += j.do_calls || 0;
}
const mean = (x) => (n ? (x / n).toFixed(2) : "");
console.log([mode, scenario, n, mean(d1), mean(dos)].join("\t"));
