// TensorFlow's canonical error codes, as TensorFlow Serving names them in model status
// ("error_code") and maps them to HTTP statuses (tensorflow_serving/model_servers/http_server.cc,
// ToHTTPStatusCode). Every error the server answers is a ServeError, so the status a client sees
// is the one TF Serving would send for the same fault.

export const TF_HTTP_STATUS = {
  OK: 200,
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 400,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
} as const;

export type TfErrorCode = keyof typeof TF_HTTP_STATUS;

export class ServeError extends Error {
  readonly httpStatus: number;

  /** `httpStatus` overrides the code's status where HTTP has a more precise one (413). */
  constructor(
    readonly code: Exclude<TfErrorCode, 'OK'>,
    message: string,
    httpStatus?: number,
  ) {
    super(message);
    this.name = 'ServeError';
    this.httpStatus = httpStatus ?? TF_HTTP_STATUS[code];
  }
}

/** Request text quoted in an error message, cut so a hostile request cannot fill the log or the reply. */
export function quote(text: string, max = 80): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return JSON.stringify(cut);
}
