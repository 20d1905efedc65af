<exporters/nux_kuberay/ copied as it is>
