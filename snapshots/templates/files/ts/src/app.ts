import Fastify from "fastify";

const app = Fastify({ logger: true });

interface Health {
  status: "ok";
  uptime: number;
}

app.get("/api/health", async (): Promise<Health> => ({ status: "ok", uptime: process.uptime() }));

app.get("/", async () => ({ hello: "world" }));

const port = Number(process.env.PORT ?? 3000);
app.listen({ port, host: "0.0.0.0" }).catch((err: unknown) => {
  app.log.error(err);
  process.exit(1);
});
