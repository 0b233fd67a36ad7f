/**
 * Which paths are below which, for applying layers: each path is linked
 * into its parent's set of children (implicit parents included), so a
 * whiteout, an opaque directory or a file over a directory visits only the
 * subtree it removes, and reading a layer stays linear in its entries.
 * Paths are "/a/b" with root "/", or "a/b" with root "".
 */
export class PathTree {
  private readonly children = new Map<string, Set<string>>();
  private linked = 0;
  constructor(private readonly root: '/' | '') {}

  /** Paths linked into the tree, implicit parents included. */
  get size(): number {
    return this.linked;
  }

  private parentOf(path: string): string {
    const slash = path.lastIndexOf('/');
    if (slash < 0) return '';
    return slash === 0 ? '/' : path.slice(0, slash);
  }

  add(path: string): void {
    let child = path;
    while (child !== this.root) {
      const parent = this.parentOf(child);
      let set = this.children.get(parent);
      if (!set) {
        set = new Set();
        this.children.set(parent, set);
      }
      if (set.has(child)) return;
      set.add(child);
      this.linked += 1;
      child = parent;
    }
  }

  /**
   * Calls `remove` for `path` (when `includeSelf`) and every path below it;
   * `remove` says whether the path is gone now (true) or stays (false).
   */
  removeBelow(path: string, includeSelf: boolean, remove: (path: string) => boolean): void {
    const visit = (node: string, self: boolean): void => {
      const gone = self ? remove(node) : false;
      const below = this.children.get(node);
      if (below) {
        for (const child of [...below]) visit(child, true);
        if (below.size === 0) this.children.delete(node);
      }
      if (gone && !this.children.has(node) && node !== this.root && this.children.get(this.parentOf(node))?.delete(node)) this.linked -= 1;
    };
    visit(path, includeSelf);
  }
}

/**
 * The longest entry name or link target lapin reads from a layer, in bytes:
 * Linux's PATH_MAX. No runtime can unpack a longer one (containerd and
 * docker join it to the rootfs path), and a name of a million components
 * would cost a tree node each: 16 KiB of gzip held 2.3 GB.
 */
export const LAYER_NAME_LIMIT = 4096;

/** Why a layer entry's name or link target (latin1, one char a byte, as byteNameExtract gives it) is refused, or undefined. */
export function layerNameProblem(latin1: string, what: 'name' | 'link target'): string | undefined {
  if (latin1.length <= LAYER_NAME_LIMIT) return undefined;
  return `an entry whose ${what} is ${latin1.length} bytes, longer than the ${LAYER_NAME_LIMIT} (PATH_MAX) a runtime can unpack`;
}
