import type { Descriptor, ImageConfig, Manifest } from '../image/model.js';

// The one image model is image/model.ts; these are its names on the read side (and in the public API).
export type { ImageSource, SourceTransport } from '../image/model.js';

/** An OCI descriptor as read from someone else's image (image/model.ts's Descriptor). */
export type SourceDescriptor = Descriptor;

/** An image manifest (image/model.ts's Manifest). */
export type SourceManifest = Manifest;

/** The fields of an image config that inspect and run read (image/model.ts's ImageConfig). */
export type SourceImageConfig = ImageConfig;
