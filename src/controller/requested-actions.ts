// Day-2 actions asked for with an annotation (api.md §11, Flux's requestedAt pattern): `kubectl annotate nep X
// registry-notifier.io/replay-requested-at="$(date +%s)" --overwrite`. A request is a value of the annotation that
// differs from the value the status says was handled last; handling it records that value in status, so a resync,
// a second reconcile or a controller restart never handles it twice. Each action is one entry of REQUESTED_ACTIONS.
import {
  REPLAY_REQUESTED_ANNOTATION,
  RESUME_REQUESTED_ANNOTATION,
  type NotificationEndpointStatus,
} from '../api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../k8s/cluster-api.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';

/** What the controller does to a running endpoint on request: a port, so tests (and the engine) plug in here. */
export interface EndpointActions {
  /** Moves the endpoint's dead letters back to the tail of its queue: how many, or undefined when it does not run. */
  replay(name: string): Promise<number | undefined>;
  /** Lets an `AutoDisabled` endpoint send again: true if it was AutoDisabled, false when there was nothing to resume. */
  resume(name: string): Promise<boolean>;
}

/** The status field that holds the value of a request last handled. */
export type HandledField = 'lastHandledReplayAt' | 'lastHandledResumeAt';

/** The handled values to write into status. */
export type HandledFields = Pick<NotificationEndpointStatus, HandledField>;

/** One kind of request: its annotation, its status field, its Event reason and what handling it does. */
export interface RequestedAction {
  readonly annotation: string;
  readonly handled: HandledField;
  /** The reason of the Normal Event recorded when a request was handled. */
  readonly reason: string;
  /** Runs the action; resolves with the Event's message, or undefined when the endpoint does not run (not handled). */
  run(actions: EndpointActions, name: string): Promise<string | undefined>;
}

/** Every action a NotificationEndpoint's annotations can ask for. */
export const REQUESTED_ACTIONS: readonly RequestedAction[] = Object.freeze([
  {
    annotation: REPLAY_REQUESTED_ANNOTATION,
    handled: 'lastHandledReplayAt',
    reason: 'ReplayRequested',
    run: async (actions: EndpointActions, name: string) => {
      const replayed = await actions.replay(name);
      return replayed === undefined ? undefined : `${replayed} dead ${replayed === 1 ? 'letter' : 'letters'} back in the queue`;
    },
  },
  {
    annotation: RESUME_REQUESTED_ANNOTATION,
    handled: 'lastHandledResumeAt',
    reason: 'ResumeRequested',
    run: async (actions: EndpointActions, name: string) =>
      (await actions.resume(name)) ? 'the AutoDisabled endpoint sends again' : 'the endpoint was not AutoDisabled: nothing to resume',
  },
]);

/** A request not handled yet: the action and the annotation's value. */
export interface PendingRequest {
  readonly action: RequestedAction;
  readonly value: string;
}

/**
 * The requests an object carries that are not handled yet: each annotation that is set, not empty, and differs from
 * what `handled` says was handled last (by default the object's own status).
 */
export function pendingRequests(object: NotificationEndpointObject, handled: (field: HandledField) => string | undefined = (field) => object.status?.[field]): PendingRequest[] {
  const annotations = object.metadata?.annotations ?? {};
  const pending: PendingRequest[] = [];
  for (const action of REQUESTED_ACTIONS) {
    const value = annotations[action.annotation];
    if (value !== undefined && value !== '' && value !== handled(action.handled)) pending.push({ action, value });
  }
  return pending;
}

/** The request annotations' values, as one string: a watch event that changes it asks for a reconcile. */
export function requestSignature(object: NotificationEndpointObject): string {
  return JSON.stringify(REQUESTED_ACTIONS.map((action) => object.metadata?.annotations?.[action.annotation] ?? null));
}

/** The delivery engine's side of `EndpointActions`. */
export function engineActions(endpoints: EndpointSet): EndpointActions {
  return {
    replay: async (name) => endpoints.replay(name),
    // true when the endpoint was AutoDisabled and sends again; an endpoint not (or no longer) here has nothing to resume.
    resume: async (name) => endpoints.resume(name) ?? false,
  };
}
