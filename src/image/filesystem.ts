import path from 'node:path';
import { LapinError, type SourcePosition } from '../errors.js';
import { comparePaths, type DirNode, type FsNode } from './tree.js';

/** Normalizes an absolute or relative image path to tree form ("a/b", "" for the root). */
export function treePath(imagePath: string): string {
  return path.posix.normalize(`/${imagePath}`).replace(/^\/+/, '').replace(/\/+$/, '');
}

function parentOf(p: string): string {
  const slash = p.lastIndexOf('/');
  return slash < 0 ? '' : p.slice(0, slash);
}

/**
 * An in-memory filesystem tree of nodes whose file data stays on disk.
 * Builds apply copies to it; writers read it in byte order.
 */
export class ImageFilesystem {
  private readonly nodes = new Map<string, FsNode>();
  /** For each file path, the hardlinks that name it. */
  private readonly linksTo = new Map<string, Set<string>>();

  constructor(private readonly defaults: { mtime: number }) {}

  get(p: string): FsNode | undefined {
    return this.nodes.get(treePath(p));
  }

  /** Follows symlinks inside the tree, as the guest would, up to a limit. */
  resolve(p: string): FsNode | undefined {
    let current = treePath(p);
    for (let hops = 0; hops < 40; hops++) {
      const parts = current === '' ? [] : current.split('/');
      let prefix = '';
      let restarted = false;
      for (let i = 0; i < parts.length; i++) {
        prefix = prefix === '' ? (parts[i] as string) : `${prefix}/${parts[i] as string}`;
        const node = this.nodes.get(prefix);
        if (!node) return undefined;
        if (node.type === 'symlink') {
          const base = node.target.startsWith('/') ? '' : parentOf(prefix);
          current = treePath(`${base}/${node.target}/${parts.slice(i + 1).join('/')}`);
          restarted = true;
          break;
        }
        if (node.type === 'hardlink' && i === parts.length - 1) return this.nodes.get(node.target);
      }
      if (!restarted) return current === '' ? this.root() : this.nodes.get(current);
    }
    return undefined;
  }

  private root(): DirNode {
    return { type: 'dir', path: '', mode: 0o755, uid: 0, gid: 0, mtime: this.defaults.mtime };
  }

  /** Creates missing parent directories (0755, root-owned) for a path. */
  ensureParents(p: string, at?: SourcePosition): void {
    const parent = parentOf(p);
    if (parent === '') return;
    const existing = this.nodes.get(parent);
    if (existing) {
      if (existing.type !== 'dir') {
        throw new LapinError(`cannot create /${p}: /${parent} is not a directory in the image`, at ? { at } : {});
      }
      return;
    }
    this.ensureParents(parent, at);
    this.nodes.set(parent, { type: 'dir', path: parent, mode: 0o755, uid: 0, gid: 0, mtime: this.defaults.mtime });
  }

  /** Adds or replaces a node; a directory replaces only its own attributes. */
  put(node: FsNode, at?: SourcePosition): void {
    if (node.path === '') return;
    this.ensureParents(node.path, at);
    const existing = this.nodes.get(node.path);
    if (existing && (existing.type === 'dir') !== (node.type === 'dir')) {
      const what = existing.type === 'dir' ? 'a directory with a file' : 'a file with a directory';
      throw new LapinError(`cannot replace ${what} at /${node.path}`, at ? { at } : {});
    }
    if (existing) this.unlink(existing);
    if (node.type === 'hardlink') {
      const links = this.linksTo.get(node.target) ?? new Set<string>();
      links.add(node.path);
      this.linksTo.set(node.target, links);
    }
    this.nodes.set(node.path, node);
  }

  /**
   * Takes a node out of the link index before it is replaced. A hard link
   * shares content, not a path: when the file it names is replaced (a later
   * COPY over it), the links keep the old content, as in a real filesystem.
   * The first link in byte order takes the file's data; the others name it.
   */
  private unlink(existing: FsNode): void {
    if (existing.type === 'hardlink') {
      const links = this.linksTo.get(existing.target);
      links?.delete(existing.path);
      if (links?.size === 0) this.linksTo.delete(existing.target);
      return;
    }
    const links = this.linksTo.get(existing.path);
    if (!links) return;
    this.linksTo.delete(existing.path);
    if (existing.type !== 'file') return;
    const [heir, ...rest] = [...links].sort(comparePaths);
    const heirNode = this.nodes.get(heir as string);
    if (heirNode?.type !== 'hardlink') return;
    this.nodes.set(heirNode.path, { ...existing, path: heirNode.path, mode: heirNode.mode, uid: heirNode.uid, gid: heirNode.gid, mtime: heirNode.mtime });
    for (const other of rest) {
      const link = this.nodes.get(other);
      if (link?.type === 'hardlink') this.put({ ...link, target: heirNode.path });
    }
  }

  /**
   * Writers want a link's file before the link in byte order; a directory
   * walk can meet a link first ("a-b" sorts before "a/x"). The earliest
   * name of each group becomes the file, the others links to it.
   */
  private linkInOrder(): void {
    for (const [target, links] of [...this.linksTo]) {
      const first = [...links].sort(comparePaths)[0] as string;
      const file = this.nodes.get(target);
      const firstNode = this.nodes.get(first);
      if (comparePaths(first, target) > 0 || file?.type !== 'file' || firstNode?.type !== 'hardlink') continue;
      const others = [...links].filter((l) => l !== first);
      this.linksTo.delete(target);
      this.nodes.set(first, { ...file, path: first, mode: firstNode.mode, uid: firstNode.uid, gid: firstNode.gid, mtime: firstNode.mtime });
      this.linksTo.set(first, new Set([target, ...others]));
      this.nodes.set(target, { type: 'hardlink', path: target, mode: file.mode, uid: file.uid, gid: file.gid, mtime: file.mtime, target: first });
      for (const other of others) {
        const link = this.nodes.get(other);
        if (link?.type === 'hardlink') this.nodes.set(other, { ...link, target: first });
      }
    }
  }

  isDirectory(p: string): boolean {
    const key = treePath(p);
    return key === '' || this.resolve(key)?.type === 'dir';
  }

  /** Every node in byte order of paths; parents come before children. */
  list(): FsNode[] {
    this.linkInOrder();
    return [...this.nodes.values()].sort((a, b) => comparePaths(a.path, b.path));
  }

  /** The nodes at or below a tree path, in byte order. */
  subtree(p: string): FsNode[] {
    const key = treePath(p);
    return this.list().filter((n) => key === '' || n.path === key || n.path.startsWith(`${key}/`));
  }

  get size(): number {
    return this.nodes.size;
  }
}
