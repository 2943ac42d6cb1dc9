"""comfy-sdk, unchanged, through the proxy's host mount: the environment names the proxy
(COMFY_BASE_URL) and a team sk- key (COMFY_API_KEY), exactly as a user would set them.
Lists jobs, follows the server's own links (job.urls.*) and reads the SSE stream, then
prints one JSON line of what it saw for the Rust test to check."""

import json

from comfy_sdk import Comfy

client = Comfy()
jobs = list(client.list_jobs(limit=10))
job = client.jobs.get(jobs[0].id)
self_link = job._model.urls.self
job.refresh()  # follows urls.self, a host-relative server link
events = [type(e).__name__ for e in job.events()]  # follows urls.events: SSE
print(
    json.dumps(
        {
            "jobs": [j.id for j in jobs],
            "status": job.status,
            "self_link": self_link,
            "events": events,
        }
    )
)
