# How the stages that run on torch.distributed (3, 5, 6 and 7) start their processes, as
# Kaldi's cmd.sh says how jobs reach a cluster. Sourced by run.sh; used by utils/launch.sh,
# which adds `--nproc_per_node <world-size / num_nodes> -m <step module> <options>`.
# The job's size is run.sh's --world-size (processes in all); ranks must share the file system.
# `python -m rlhf.torchrun` is torch's torchrun (same options) whose --standalone takes a free port.

# One machine (the default): local processes, rendezvous on this host (gloo on CPU, NCCL on GPU).
export num_nodes=1
export launch_cmd="python -m rlhf.torchrun --standalone"

# Several machines under Slurm: run ./run.sh inside an allocation (sbatch --nodes=4 ...); srun
# starts one torchrun agent per machine, and they meet at the first machine's address.
#   export num_nodes=$SLURM_JOB_NUM_NODES
#   export launch_cmd="srun --nodes=$num_nodes --ntasks-per-node=1 python -m rlhf.torchrun --nnodes=$num_nodes \
#     --rdzv_backend=c10d --rdzv_endpoint=$(hostname):29500 --rdzv_id=$SLURM_JOB_ID"
#
# Several machines by hand (no scheduler): start the same step on every machine, e.g. for stage 5
# on 2 machines with 8 processes each, with node0 reachable from all (see README, Scaling out):
#   node0$ utils/launch.sh --world-size 16 --nodes 2 --cmd "python -m rlhf.torchrun --nnodes=2 --rdzv_backend=c10d \
#            --rdzv_endpoint=node0:29500 --rdzv_id=lat1" rlhf.bin.make_lattices <options as run.sh gives them>
#   node1$ (the same command)
