// Writes a tiny, valid, deterministic OCI image layout for end-to-end tests (no external tools).
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** Options of buildOciLayout: `seed` makes the content (and so every digest) unique yet stable, `ref` names the image in index.json. */
export interface OciLayoutOptions {
  seed?: string;
  ref?: string;
}

/** What buildOciLayout wrote: the layout directory, the three content digests ("sha256:<hex>"), their sizes, and the ref for `oci:DIR:REF`. */
export interface OciLayout {
  dir: string;
  ref: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  configSize: number;
  layerDigest: string;
  layerSize: number;
}

/** OCI media types used by the layout, as the registry reports them in `target.mediaType`. */
export const OCI_MEDIA_TYPES = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

const BLOCK = 512;
const FIXED_MTIME = 946_684_800; // 2000-01-01T00:00:00Z: keeps the tar, hence every digest, reproducible

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Writes `value` as a NUL-terminated, zero-padded octal number into a header field. */
function putOctal(header: Buffer, offset: number, length: number, value: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii');
}

/** Builds a ustar archive of regular files (names < 100 bytes, all owned by 0:0, mode 0644), closed by two zero blocks. */
export function tarFiles(files: ReadonlyArray<{ name: string; content: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const { name, content } of files) {
    if (Buffer.byteLength(name) >= 100) throw new Error(`tar: name too long: ${name}`);
    const header = Buffer.alloc(BLOCK, 0);
    header.write(name, 0, 100, 'utf8'); // name
    putOctal(header, 100, 8, 0o644); // mode
    putOctal(header, 108, 8, 0); // uid
    putOctal(header, 116, 8, 0); // gid
    putOctal(header, 124, 12, content.length); // size
    putOctal(header, 136, 12, FIXED_MTIME); // mtime
    header.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
    header.write('0', 156, 1, 'ascii'); // typeflag: regular file
    header.write('ustar\0', 257, 6, 'ascii'); // magic
    header.write('00', 263, 2, 'ascii'); // version
    header.write('root', 265, 32, 'ascii'); // uname
    header.write('root', 297, 32, 'ascii'); // gname
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
    parts.push(header, content, Buffer.alloc((BLOCK - (content.length % BLOCK)) % BLOCK, 0));
  }
  parts.push(Buffer.alloc(2 * BLOCK, 0));
  return Buffer.concat(parts);
}

/** Writes an OCI image layout (oci-layout, index.json, blobs/sha256/*) with one gzip'd tar layer holding `/hello.txt`; same seed, same digests. */
export async function buildOciLayout(dir: string, opts: OciLayoutOptions = {}): Promise<OciLayout> {
  const seed = opts.seed ?? 'registry-notifier';
  const ref = opts.ref ?? 'latest';
  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const writeBlob = async (data: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = sha256(data);
    await writeFile(join(blobDir, digest.slice('sha256:'.length)), data);
    return { digest, size: data.length };
  };

  const tar = tarFiles([{ name: 'hello.txt', content: Buffer.from(`hello from ${seed}\n`) }]);
  // gzip output is deterministic: zlib writes MTIME 0 and a fixed OS byte; level pinned for stability.
  const layer = await writeBlob(gzipSync(tar, { level: 9 }));
  const config = await writeBlob(
    Buffer.from(
      JSON.stringify({
        created: new Date(FIXED_MTIME * 1000).toISOString(),
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/true'], Labels: { 'org.example.seed': seed } },
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
        history: [{ created: new Date(FIXED_MTIME * 1000).toISOString(), created_by: 'buildOciLayout' }],
      }),
    ),
  );
  const manifest = await writeBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MEDIA_TYPES.manifest,
        config: { mediaType: OCI_MEDIA_TYPES.config, digest: config.digest, size: config.size },
        layers: [{ mediaType: OCI_MEDIA_TYPES.layer, digest: layer.digest, size: layer.size }],
      }),
    ),
  );
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: OCI_MEDIA_TYPES.manifest,
        digest: manifest.digest,
        size: manifest.size,
        annotations: { 'org.opencontainers.image.ref.name': ref },
      },
    ],
  };
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  return {
    dir,
    ref,
    manifestDigest: manifest.digest,
    manifestSize: manifest.size,
    configDigest: config.digest,
    configSize: config.size,
    layerDigest: layer.digest,
    layerSize: layer.size,
  };
}
