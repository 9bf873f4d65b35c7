/** What a client printed when it failed: execFile's promise rejects with its stdout and stderr on the error. */
export async function failureText(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return `${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`;
  }
  throw new Error('the client succeeded');
}
