# The image every step of `pipeline compile --target argo` runs (README, "Kubernetes"): the tool,
# built, with this repository's pipelines/ and data/ at the paths the compiled steps name.
#   docker build -t tfjs-pipeline:0.1.0 .        # the tag is the default of compile's --image
FROM node:20-bookworm-slim

# The webgpu backend (Dawn) needs the Vulkan loader on a GPU node; the NVIDIA container runtime
# mounts the driver's Vulkan part only when "graphics" is among the capabilities asked for.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 \
 && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

WORKDIR /app
COPY . .
# `prepare` compiles the TypeScript during npm ci; the compilers and test tools then go.
RUN npm ci && npm prune --omit=dev && npm cache clean --force

ENTRYPOINT ["npx", "pipeline"]
CMD ["--help"]
