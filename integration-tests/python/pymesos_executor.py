#!/usr/bin/env python3
"""A small custom executor written with pymesos's MesosExecutorDriver.

Started by a Mesos-compatible agent (it reads the agent's MESOS_* environment). For
every task it receives it reports TASK_RUNNING, sends the framework the message
`hello from <task id>` and reports TASK_FINISHED. It exits when the agent shuts it
down.
"""

import logging
import sys
import threading

from pymesos import Executor, MesosExecutorDriver, encode_data


class CheckExecutor(Executor):
    def registered(self, driver, executor_info, framework_info, agent_info):
        print("registered executor %s of framework %s on %s" % (
            executor_info["executor_id"]["value"], framework_info["id"]["value"],
            agent_info.get("hostname")), flush=True)

    def launchTask(self, driver, task):
        # Updates are sent from a thread of their own, as the driver's callbacks
        # must not block its event loop.
        threading.Thread(target=self.run_task, args=(driver, task), daemon=True).start()

    def run_task(self, driver, task):
        task_id = task["task_id"]
        print("running %s" % task_id["value"], flush=True)
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_RUNNING"})
        greeting = "hello from %s" % task_id["value"]
        driver.sendFrameworkMessage(encode_data(greeting.encode("utf-8")))
        driver.sendStatusUpdate({
            "task_id": task_id,
            "state": "TASK_FINISHED",
            "message": "said hello",
        })
        print("finished %s" % task_id["value"], flush=True)

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def shutdown(self, driver):
        print("shutting down", flush=True)


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    driver = MesosExecutorDriver(CheckExecutor())
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
