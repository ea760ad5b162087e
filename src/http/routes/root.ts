/**
 * `GET /` (and the base path): where to go from here. ReductStore redirects to its web console
 * at `/ui/`; Ferry has no console, and a redirect to a 404 helps nobody, so it answers a small
 * JSON document that points to the API and the documentation instead.
 */
import type { ServerResponse } from 'node:http';
import type { FerryConfig } from '../../config/types.js';
import { sendJson } from '../respond.js';
import { API_VERSION, SERVER_VERSION } from '../version.js';

/** Answers `GET|HEAD /` with the pointers of a fresh user. */
export function sendRoot(res: ServerResponse, config: FerryConfig): void {
  const api = `${config.apiBasePath}api/v1/`;
  sendJson(res, {
    server: 'Ferry',
    version: SERVER_VERSION,
    api_version: API_VERSION,
    api,
    alive: `${api}alive`,
    info: `${api}info (needs a token unless authentication is disabled)`,
    console: null,
    docs: 'README.md and docs/reference.md of the Ferry repository; the API is the ReductStore HTTP API v1',
  });
}
