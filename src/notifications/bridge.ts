import { v4 as uuidv4 } from 'uuid';
import type { ActorRecord, Event, RequestRecord, SourceRecord, Target } from './event.ts';
import type { Sink } from './sink.ts';

/** A content descriptor as Distribution's listener receives it. */
export interface Descriptor {
  mediaType: string;
  size: number;
  digest: string;
}

/** A manifest as the bridge needs it: its canonical descriptor and, optionally, what it references. */
export interface ManifestInfo extends Descriptor {
  references?: Descriptor[];
}

/** All the bridge needs of its destination: a sink's `write` (an `EndpointSet` fits too). */
export type EventWriter = Pick<Sink<Event>, 'write'>;

/** Settings of a `Bridge`; the records are copied into every event it creates. */
export interface BridgeOptions {
  /** Base of the registry's URLs for `target.url`, e.g. `http://registry:5000` (no trailing slash). */
  baseUrl: string;
  source: SourceRecord;
  actor?: ActorRecord;
  request?: RequestRecord;
  /** Put a manifest's references into `target.references` (Distribution's `includereferences`). */
  includeReferences?: boolean;
  now?: () => Date;
  newId?: () => string;
}

/**
 * Distribution's repository listener (notifications/bridge.go): each call creates one event shaped exactly as
 * the registry shapes it (field for field and in the same order, so a receiver cannot tell the difference) and
 * writes it to the sink; the promise settles as the sink's write does. (Events a registry already made come in
 * through the ingest and go to the endpoints as they are: they never pass through here.)
 */
export class Bridge {
  #sink: EventWriter;
  #options: BridgeOptions;

  constructor(sink: EventWriter, options: BridgeOptions) {
    this.#sink = sink;
    this.#options = options;
  }

  /** A manifest was pushed (to `tag`, when the push named one). */
  manifestPushed(repository: string, manifest: ManifestInfo, tag?: string): Promise<void> {
    return this.#write(this.#manifestEvent('push', repository, manifest, tag));
  }

  /** A manifest was pulled (by `tag`, when the pull named one). */
  manifestPulled(repository: string, manifest: ManifestInfo, tag?: string): Promise<void> {
    return this.#write(this.#manifestEvent('pull', repository, manifest, tag));
  }

  /** A manifest was deleted by digest. */
  manifestDeleted(repository: string, digest: string): Promise<void> {
    return this.#write(this.#event('delete', { digest, repository }));
  }

  /** A blob was pushed. */
  blobPushed(repository: string, blob: Descriptor): Promise<void> {
    return this.#write(this.#event('push', this.#blobTarget(repository, blob)));
  }

  /** A blob was pulled. */
  blobPulled(repository: string, blob: Descriptor): Promise<void> {
    return this.#write(this.#event('pull', this.#blobTarget(repository, blob)));
  }

  /** A blob was mounted into `repository` from `fromRepository`. */
  blobMounted(repository: string, blob: Descriptor, fromRepository: string): Promise<void> {
    return this.#write(this.#event('mount', this.#blobTarget(repository, blob, fromRepository)));
  }

  /** A blob was deleted by digest. */
  blobDeleted(repository: string, digest: string): Promise<void> {
    return this.#write(this.#event('delete', { digest, repository }));
  }

  /** A tag was deleted. */
  tagDeleted(repository: string, tag: string): Promise<void> {
    return this.#write(this.#event('delete', { repository, tag }));
  }

  /** A whole repository was deleted. */
  repoDeleted(repository: string): Promise<void> {
    return this.#write(this.#event('delete', { repository }));
  }

  #manifestEvent(action: string, repository: string, manifest: ManifestInfo, tag?: string): Event {
    const target: Target = {
      mediaType: manifest.mediaType,
      size: manifest.size,
      digest: manifest.digest,
      length: manifest.size,
      repository,
      url: `${this.#options.baseUrl}/v2/${repository}/manifests/${manifest.digest}`,
      ...(tag !== undefined && tag !== '' && { tag }),
      ...(this.#options.includeReferences && manifest.references?.length && { references: manifest.references }),
    };
    return this.#event(action, target);
  }

  #blobTarget(repository: string, blob: Descriptor, fromRepository?: string): Target {
    return {
      mediaType: blob.mediaType,
      size: blob.size,
      digest: blob.digest,
      length: blob.size,
      repository,
      ...(fromRepository !== undefined && { fromRepository }),
      url: `${this.#options.baseUrl}/v2/${repository}/blobs/${blob.digest}`,
    };
  }

  #event(action: string, target: Target): Event {
    return {
      id: (this.#options.newId ?? uuidv4)(),
      timestamp: this.#now().toISOString(),
      action,
      target,
      request: this.#options.request ?? {},
      actor: this.#options.actor ?? {},
      source: this.#options.source,
    };
  }

  #now(): Date {
    return (this.#options.now ?? (() => new Date()))();
  }

  #write(event: Event): Promise<void> {
    return this.#sink.write([event]);
  }
}
