/** The human lines for `report.urunc`: every engine on every urunc release line, the chosen release first. */
import { releaseName, URUNC_RELEASES } from '../plan/releases.js';
import type { EngineValueSource, EngineVerdict, UruncEngineReport } from './engines.js';

const ENGINE_LABELS: Readonly<Record<EngineVerdict['engine'], string>> = {
  docker: 'docker',
  containerd: 'containerd (ctr, nerdctl)',
  cri: 'Kubernetes CRI',
  podman: 'podman',
};

const SOURCE_LABELS: Readonly<Record<EngineValueSource, string>> = {
  'spec-annotations': 'the manifest annotations it copies into the spec',
  'image-metadata': "the image's manifest annotations and labels, looked up by urunc's shim",
  uruncJson: '/urunc.json',
  none: 'nothing',
};

/** Shell words, quoted only where needed. */
function shellLine(argv: readonly string[]): string {
  return argv.map((word) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function engineLines(report: UruncEngineReport): string[] {
  const lines = [`ways to run it (the verdict is for ${releaseName(report.release)}; --urunc-version chooses)`];
  const releases = [report.release, ...[...URUNC_RELEASES].reverse().filter((r) => r !== report.release)];
  for (const release of releases) {
    lines.push(`  ${releaseName(release)}`);
    for (const verdict of report.engines.filter((v) => v.release === release)) {
      const label = ENGINE_LABELS[verdict.engine];
      lines.push(verdict.runs ? `    yes  ${label}: from ${SOURCE_LABELS[verdict.source]}` : `    no   ${label}: ${verdict.reasons.join('; ')}`);
    }
  }
  const commands = new Map<string, string>();
  for (const verdict of report.engines) if (verdict.command) commands.set(verdict.engine, shellLine(verdict.command));
  if (commands.size > 0) {
    lines.push('  the image has neither Cmd nor Entrypoint, so docker run, nerdctl run and podman run need a command:');
    for (const command of commands.values()) lines.push(`    ${command}`);
  }
  return lines;
}
