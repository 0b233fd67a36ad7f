/**
 * `lapin inspect` of an image index: each platform is judged as a single
 * image is (inspect.ts), plus whether its kernel is built for the platform
 * the index lists it under; the index runs when every platform does.
 */
import { namesIndex, openImageIndex, formatPlatform, type ImageIndex, type OpenIndexOptions } from '../source/image-index.js';
import { releaseName, NEWEST_URUNC_RELEASE } from '../plan/releases.js';
import { escapeLine } from '../text.js';
import { formatReport } from './format.js';
import { inspect, INSPECT_SCHEMA_VERSION, inspectSource, type InspectOptions, type InspectReport, type UruncRelease } from './inspect.js';

export interface PlatformReport {
  /** "linux/arm64". */
  platform: string;
  manifestDigest: string;
  report: InspectReport;
}

export interface IndexInspectReport {
  schemaVersion: number;
  /** Tells this report from a single image's. */
  kind: 'index';
  source: { name: string; transport: string };
  index: { digest: string; mediaType: string };
  /** The urunc release line the verdicts are for. */
  release: UruncRelease;
  platforms: PlatformReport[];
  /** Entries that are no image to run (attestations, artifacts), not judged. */
  leftOut: Array<{ digest: string; what: string }>;
  /** Every platform runs; exit code 0 exactly when true. */
  runnable: boolean;
}

export type AnyInspectReport = InspectReport | IndexInspectReport;

export function isIndexReport(report: AnyInspectReport): report is IndexInspectReport {
  return (report as IndexInspectReport).kind === 'index';
}

/** An arm64 entry with an x86 kernel boots nowhere: urunc picks the entry by the host's platform. */
function checkKernelPlatform(report: InspectReport, architecture: string): InspectReport {
  const binary = report.files.find((f) => f.key === 'binary');
  if (!binary?.architecture || binary.architecture === architecture) return report;
  // inspect.ts already refused it when the image's own config says this architecture.
  if (report.image.architecture === architecture) return report;
  return {
    ...report,
    errors: [...report.errors, { message: `the index lists this image for ${architecture}, but its kernel ${binary.path} is ${binary.architecture}`, hint: `build the ${architecture} image with a kernel built for ${architecture}` }],
    runnable: false,
  };
}

export async function inspectIndex(index: ImageIndex, options: InspectOptions = {}): Promise<IndexInspectReport> {
  if (!index.index) throw new Error('inspectIndex: the source is not an index');
  const platforms: PlatformReport[] = [];
  for (const entry of index.entries) {
    const source = await entry.open();
    try {
      const report = checkKernelPlatform(await inspectSource(source, options), entry.platform.architecture);
      platforms.push({ platform: formatPlatform(entry.platform), manifestDigest: entry.descriptor.digest, report });
    } finally {
      await source.close();
    }
  }
  return {
    schemaVersion: INSPECT_SCHEMA_VERSION,
    kind: 'index',
    source: { name: index.name, transport: index.transport },
    index: { digest: index.index.digest, mediaType: index.index.mediaType },
    release: options.release ?? NEWEST_URUNC_RELEASE,
    platforms,
    leftOut: (index.leftOut ?? []).map((l) => ({ digest: l.digest, what: l.what })),
    runnable: platforms.length > 0 && platforms.every((p) => p.report.runnable),
  };
}

/**
 * Inspects SOURCE: an index per platform (inspectIndex), anything else as
 * one image (inspect.ts). docker archives and the daemon hold no index.
 */
export async function inspectAny(sourceText: string, options: OpenIndexOptions & InspectOptions = {}): Promise<AnyInspectReport> {
  const { release, imageName, ...open } = options;
  const judging = { ...(release ? { release } : {}), ...(imageName ? { imageName } : {}) };
  if (!(await namesIndex(sourceText, open))) return inspect(sourceText, options);
  const index = await openImageIndex(sourceText, open);
  try {
    if (index.index) return await inspectIndex(index, judging);
    return await inspect(sourceText, options);
  } finally {
    await index.close();
  }
}

function verdict(report: InspectReport): string {
  const release = releaseName(report.urunc.release);
  return report.runnable ? `${release} can run it` : `${release} cannot run it (${report.errors.length} error${report.errors.length === 1 ? '' : 's'})`;
}

/**
 * Each platform's report under a heading, then one verdict line per platform and the index's.
 * Platforms and names come from the index: escaped as every report line is (src/text.ts).
 */
export function formatIndexReport(report: IndexInspectReport): string {
  const lines: string[] = [`index ${report.source.name} (${report.source.transport}), ${report.index.digest}, ${report.platforms.length} platform${report.platforms.length === 1 ? '' : 's'}`];
  for (const l of report.leftOut) lines.push(`  left out: ${l.digest}, ${l.what}`);
  for (const p of report.platforms) {
    lines.push('', `platform ${p.platform} (manifest ${p.manifestDigest})`);
    lines.push(...formatReport(p.report).trimEnd().split('\n').map((line) => `  ${line}`));
  }
  lines.push('', 'verdicts');
  for (const p of report.platforms) lines.push(`  ${p.platform}: ${verdict(p.report)}`);
  const failing = report.platforms.filter((p) => !p.report.runnable).map((p) => p.platform);
  const name = releaseName(report.release);
  if (report.platforms.length === 0) lines.push(`verdict: ${name} cannot run this index: it lists no image for any platform (attestations are left out)`);
  else lines.push(failing.length === 0 ? `verdict: ${name} can run every platform of this index` : `verdict: ${name} cannot run ${failing.join(', ')} of this index`);
  return `${lines.map(escapeLine).join('\n')}\n`;
}
