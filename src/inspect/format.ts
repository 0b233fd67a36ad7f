import { describeSolo5 } from '../image/solo5.js';
import { escapeLine } from '../text.js';
import { engineLines } from './format-engines.js';
import type { InspectReport, Message, ValueSet } from './inspect.js';

function valueLines(label: string, set: ValueSet, extra = ''): string[] {
  if (!set.found) return [`  ${label}: none${extra}`];
  const lines = [`  ${label}:${extra}`];
  for (const [key, value] of Object.entries(set.values)) lines.push(`    ${key} = ${JSON.stringify(value)}`);
  return lines;
}

function messageLine(kind: string, m: Message): string {
  return `  ${kind}: ${m.message}${m.hint ? ` (${m.hint})` : ''}`;
}

function size(bytes: number | undefined): string {
  if (bytes === undefined) return '';
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The report for people; `--json` prints the object itself. */
export function formatReport(report: InspectReport): string {
  const lines: string[] = [];
  const image = report.image;
  lines.push(`image ${report.source.name} (${report.source.transport})`);
  lines.push(`  ${image.os ?? '?'}/${image.architecture ?? '?'}, ${image.layers} layer${image.layers === 1 ? '' : 's'}${image.manifestDigest ? `, manifest ${image.manifestDigest}` : ''}`);
  lines.push('urunc values');
  lines.push(...valueLines('manifest annotations', report.values.annotations));
  lines.push(...valueLines('config labels', report.values.labels, report.values.labels.found ? " (urunc 0.8's shim reads these under containerd and the CRI)" : ''));
  const json = report.values.uruncJson;
  lines.push(...valueLines('/urunc.json', json, json.found ? ' (base64-decoded)' : ''));
  for (const problem of json.problems) lines.push(`    problem: ${problem}`);
  lines.push(`  sources agree: ${report.agreement.agree ? 'yes' : `no (${report.agreement.differences.map((d) => d.key).join(', ')})`}`);
  const pair = report.pair;
  if (pair.guest || pair.monitor) {
    lines.push(`guest ${pair.guest ?? '(none)'} on monitor ${pair.monitor ?? '(none)'}: ${pair.accepted ? 'accepted by urunc' : `not accepted${pair.monitorsForGuest.length ? `; ${pair.guest} runs on ${pair.monitorsForGuest.join(', ')}` : ''}`}`);
  }
  for (const path of report.paths) lines.push(`  ${path.key} ${JSON.stringify(path.value)}: ${path.problem ?? 'clean'}`);
  if (report.files.length > 0) lines.push('files in the image rootfs');
  for (const file of report.files) {
    if (!file.exists) lines.push(`  ${file.key} ${file.path}: ${file.problem ?? 'missing'}`);
    else {
      const via = file.resolvedPath && file.resolvedPath !== file.path ? ` -> ${file.resolvedPath}` : '';
      lines.push(`  ${file.key} ${file.path}${via}: ${size(file.size)}, ${file.detail ?? file.type ?? ''}`);
      if (file.solo5) lines.push(`    Solo5 manifest: ${describeSolo5(file.solo5)}`);
    }
  }
  if (report.effective.source !== 'none') lines.push(`  guest storage: ${report.storage}`);
  lines.push('command line');
  const command = report.commandLine;
  lines.push(`  urunc < 0.7 (cmdline): ${command.cmdline === undefined ? '(not set)' : JSON.stringify(command.cmdline)}`);
  lines.push(`  urunc >= 0.7 (Entrypoint + Cmd): ${JSON.stringify(command.processArgs)}`);
  if (command.guest !== undefined) lines.push(`  guest command line: ${JSON.stringify(command.guest)}`);
  if (command.guestProblem !== undefined) lines.push(`  guest command line: ${command.guestProblem}`);
  lines.push(...engineLines(report.urunc));
  for (const error of report.errors) lines.push(messageLine('error', error));
  for (const warning of report.warnings) lines.push(messageLine('warning', warning));
  const release = report.urunc.release === 'pre-0.7' ? 'urunc < 0.7' : `urunc ${report.urunc.release}`;
  lines.push(report.runnable ? `verdict: ${release} can run this image` : `verdict: ${release} cannot run this image (${report.errors.length} error${report.errors.length === 1 ? '' : 's'})`);
  // Each entry is one line; whatever the image put in it (ESC, a newline, U+202E) is shown escaped.
  return `${lines.map(escapeLine).join('\n')}\n`;
}
