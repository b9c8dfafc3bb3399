#!/usr/bin/env python3
"""Checks a Mesos-compatible master with pymesos, a third-party JSON client.

Usage: pymesos_check.py MASTER_URL [--tasks N] [--timeout SECONDS] [--executor]

The scheduler subscribes, takes the first offer large enough for all its tasks,
launches N command tasks (`echo hello; sleep 1`) and expects every task to reach
TASK_RUNNING and then TASK_FINISHED. Updates are acknowledged explicitly. It prints
one line per update and `CHECK OK` at the end and exits 0; on a timeout, an
unexpected state or an error event it prints `CHECK FAILED: <why>` and exits 1.

With --executor the tasks go to one custom executor, pymesos_executor.py next to
this script (run by the same python), which also sends the framework a message
`hello from <task id>` per task; the check then waits for those messages too.
"""

import argparse
import getpass
import logging
import os
import shlex
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler, decode_data

CPUS_PER_TASK = 0.1
MEM_PER_TASK = 32.0
COMMAND = "echo hello; sleep 1"
EXECUTOR_ID = "pymesos-check-executor"
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0
EXECUTOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pymesos_executor.py")
# States a command task may pass through on its way to TASK_FINISHED.
EXPECTED_STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED")


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offered(offer, name):
    return sum(
        resource.get("scalar", {}).get("value", 0.0)
        for resource in offer.get("resources", [])
        if resource.get("name") == name
    )


class CheckScheduler(Scheduler):
    """Launches the tasks once and follows their states."""

    def __init__(self, task_count, use_executor):
        self.task_ids = ["pymesos-check-%d" % n for n in range(task_count)]
        self.seen = {task_id: [] for task_id in self.task_ids}
        self.use_executor = use_executor
        # Greetings still expected from the executor.
        self.greetings = set("hello from %s" % t for t in self.task_ids) if use_executor else set()
        self.launched = False
        self.done = threading.Event()
        self.failure = None
        self.lock = threading.Lock()

    def fail(self, why):
        with self.lock:
            if self.failure is None:
                self.failure = why
        self.done.set()

    def registered(self, driver, framework_id, master_info):
        print("registered as %s with master %s:%s version %s" % (
            framework_id["value"], master_info.get("hostname"), master_info.get("port"),
            master_info.get("version")), flush=True)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            count = len(self.task_ids)
            cpus = CPUS_PER_TASK * count + (EXECUTOR_CPUS if self.use_executor else 0.0)
            mem = MEM_PER_TASK * count + (EXECUTOR_MEM if self.use_executor else 0.0)
            fits = offered(offer, "cpus") >= cpus - 1e-9 and offered(offer, "mem") >= mem
            with self.lock:
                launch = not self.launched and fits
                if launch:
                    self.launched = True
            if not launch:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60.0})
                continue
            tasks = [self.task(task_id, offer) for task_id in self.task_ids]
            print("launching %d tasks on offer %s" % (len(tasks), offer["id"]["value"]),
                  flush=True)
            driver.launchTasks(offer["id"], tasks)

    def task(self, task_id, offer):
        task = {
            "name": task_id,
            "task_id": {"value": task_id},
            "agent_id": offer["agent_id"],
            "resources": [scalar("cpus", CPUS_PER_TASK), scalar("mem", MEM_PER_TASK)],
        }
        if self.use_executor:
            command = "%s %s" % (shlex.quote(sys.executable), shlex.quote(EXECUTOR_SCRIPT))
            task["executor"] = {
                "executor_id": {"value": EXECUTOR_ID},
                "name": "pymesos check executor",
                "command": {"value": command, "shell": True},
                "resources": [scalar("cpus", EXECUTOR_CPUS), scalar("mem", EXECUTOR_MEM)],
            }
        else:
            task["command"] = {"value": COMMAND, "shell": True}
        return task

    def finished(self):
        """Whether every task ran and finished and every greeting came (under the lock)."""
        return not self.greetings and all(
            "TASK_RUNNING" in states and "TASK_FINISHED" in states
            for states in self.seen.values()
        )

    def frameworkMessage(self, driver, executor_id, agent_id, data):
        text = decode_data(data).decode("utf-8")
        print("message from %s: %s" % (executor_id["value"], text), flush=True)
        with self.lock:
            if text not in self.greetings:
                unexpected = True
            else:
                unexpected = False
                self.greetings.discard(text)
            finished = self.finished()
        if unexpected:
            self.fail("unexpected message %r" % text)
        elif finished:
            self.done.set()

    def statusUpdate(self, driver, update):
        task_id = update["task_id"]["value"]
        state = update["state"]
        print("update %s %s %s" % (task_id, state, update.get("message", "")), flush=True)
        if "uuid" in update:
            driver.acknowledgeStatusUpdate(update)
        if task_id not in self.seen:
            self.fail("update for unknown task %s" % task_id)
            return
        if state not in EXPECTED_STATES:
            self.fail("task %s reached unexpected state %s (%s)" % (
                task_id, state, update.get("message", "")))
            return
        with self.lock:
            self.seen[task_id].append(state)
            finished = self.finished()
        if state == "TASK_FINISHED" and "TASK_RUNNING" not in self.seen[task_id]:
            self.fail("task %s finished without TASK_RUNNING" % task_id)
        elif finished:
            self.done.set()

    def executorLost(self, driver, executor_id, agent_id, status):
        # A command task's executor ends with its task; that is expected.
        print("executor %s ended with status %s" % (executor_id["value"], status), flush=True)

    def error(self, driver, message):
        self.fail("error event: %s" % message)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("master", help="master URL, e.g. http://127.0.0.1:5050")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--executor", action="store_true",
                        help="run the tasks in the pymesos custom executor")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    master = args.master
    for prefix in ("http://", "https://"):
        if master.startswith(prefix):
            master = master[len(prefix):]
    master = master.rstrip("/")

    scheduler = CheckScheduler(args.tasks, args.executor)
    framework = {
        "user": getpass.getuser(),
        "name": "pymesos-check",
        "hostname": "localhost",
        "failover_timeout": 0.0,
    }
    driver = MesosSchedulerDriver(scheduler, framework, master,
                                  implicit_acknowledgements=False)
    driver.start()
    completed = scheduler.done.wait(args.timeout)
    driver.stop()
    driver.join()

    if not completed:
        print("CHECK FAILED: timed out after %.0f s; states seen: %s" % (
            args.timeout, scheduler.seen), flush=True)
        return 1
    if scheduler.failure is not None:
        print("CHECK FAILED: %s" % scheduler.failure, flush=True)
        return 1
    for task_id, states in sorted(scheduler.seen.items()):
        print("task %s states %s" % (task_id, " ".join(states)), flush=True)
    print("CHECK OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
