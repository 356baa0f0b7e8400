"""Prints the pod template of a Kubernetes Job as a Pod, for `podman kube play`, which
runs Pods and Deployments but not Jobs: scripts/deploy-check runs the assets Job so.

    python3 job_as_pod.py FILE.yaml JOB_NAME > pod.yaml
"""

import sys

import yaml


def main(path: str, name: str) -> None:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    jobs = [d for d in docs if d.get("kind") == "Job" and d["metadata"]["name"] == name]
    if len(jobs) != 1:
        sys.exit(f"{path}: expected one Job named {name}, found {len(jobs)}")
    template = jobs[0]["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template.get("metadata", {}).get("labels", {})},
        "spec": template["spec"],
    }
    # The Job's PVC and ConfigMap are played on their own; only the Pod is printed.
    yaml.safe_dump(pod, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
